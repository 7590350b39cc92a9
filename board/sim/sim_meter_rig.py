# A metering driver wired to a plant's chip model through the fake SPI bus and chip select, as
# SimBoard does, without building the rest of the board (for tests that only need the meter).
from board import circuit
from board.sim import machine
from drivers.atm90e32 import ATM90E32


def meter_on_plant(plant):
    machine.bind(plant)
    spi = machine.SPI(circuit.SPI_ID, baudrate=circuit.SPI_BAUD, polarity=circuit.SPI_POLARITY, phase=circuit.SPI_PHASE)
    cs = machine.Pin(circuit.PIN_METER_CS, machine.Pin.OUT, value=1)
    return ATM90E32(spi, cs, circuit.METER_UGAIN, circuit.METER_IGAIN)
