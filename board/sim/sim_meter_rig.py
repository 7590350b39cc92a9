# A metering driver wired to a plant's chip model through the fake SPI bus and chip select, as
# SimBoard does, without building the rest of the board (for tests that only need the meter).
from board import circuit as C
from board.sim import machine
from drivers.atm90e32 import ATM90E32


def meter_on_plant(plant):
    machine.bind(plant)
    spi = machine.SPI(C.SPI_ID, baudrate=C.SPI_BAUD, polarity=C.SPI_POLARITY, phase=C.SPI_PHASE)
    cs = machine.Pin(C.PIN_METER_CS, machine.Pin.OUT, value=1)
    return ATM90E32(spi, cs, C.METER_UGAIN, C.METER_IGAIN)
