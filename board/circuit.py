# The reference board's circuit: pin map and component values (docs/hardware.md).
# Shared by board/esp32_ref.py (builds the drivers on real pins) and board/sim/ (builds the same
# drivers on fake pins and models these very components in the plant). Imports no `machine`.
from drivers.ticks import const  # `_NAME = const(n)`: folded, the name takes no heap

# -- pin map (ESP32-WROOM-32, no SPIRAM). Analog inputs on ADC1 only (ADC2 is unusable with WiFi).
PIN_CP_PWM = 25  # LEDC PWM -> +-12 V output stage -> 1 kOhm -> CP
PIN_CP_ADC = 36  # ADC1_CH0 (SENSOR_VP): CP sense divider
PIN_PP_ADC = 39  # ADC1_CH3 (SENSOR_VN): PP with pull-up
PIN_NTC_ADC = 34  # ADC1_CH6: NTC divider
PIN_CONTACTOR = 26  # contactor coil driver
PIN_PHASE_RELAY = 27  # L2/L3 relay (3-phase when on)
PIN_CONTACTOR_SENSE = 35  # input-only: load-side voltage optocoupler (external pull-up, filtered)
PIN_RCD_AC = 32  # RCD module fault outputs (input, external pull-down)
PIN_RCD_DC = 33
PIN_RCD_TEST = 4  # RCD module test input
PIN_SPI_SCK = 18  # VSPI (SPI id 2)
PIN_SPI_MOSI = 23
PIN_SPI_MISO = 19
PIN_METER_CS = 5  # ATM90E32 chip select (active low)
PIN_LED = 2  # WS2812 data in (one pixel, docs/hardware.md "Status LED and button")
PIN_BUTTON = 0  # the BOOT button: active low, internal pull-up
PIN_RFID_TX = 17  # UART2 TX -> PN532 HSU RXD (free on a WROOM-32; a WROVER's PSRAM takes 16/17)
PIN_RFID_RX = 16  # UART2 RX <- PN532 HSU TXD
RFID_UART_ID = 2
RFID_BAUD = 115200  # the PN532's HSU default
RFID_RXBUF = 256  # the longest answer (two 10-byte UIDs with ATS) fits with room for a late ACK
LED_PIXELS = 1
BUTTON_LONG_MS = 10000  # a long press: factory reset (when no vehicle charges)
BUTTON_SHORT_MAX_MS = 2000  # released later than this (and before BUTTON_LONG_MS): no action
SPI_ID = 2
SPI_BAUD = 200000  # the ATM90E32 family is specified well above this; slow is robust on long traces
SPI_POLARITY = 1  # SPI mode 3
SPI_PHASE = 1

VREF_MV = 3300  # the 3.3 V rail that feeds the pull-ups

# -- control pilot output: +-12 V op-amp stage with a 1 kOhm series resistor (IEC 61851-1 Annex A)
CP_R_OUT = 1000
CP_V_POS_MV = 12000
CP_V_NEG_MV = -12000

# -- control pilot sense: CP -- R1 -- node; node -- R2 -- 3.3 V; node -- R3 -- GND.
#    +12 V -> 2.372 V, 0 V -> 1.535 V, -12 V -> 0.698 V at the ADC (inside the ESP32's 11 dB range).
_CP_SENSE_R1 = const(180000)
_CP_SENSE_R2 = const(27000)
_CP_SENSE_R3 = const(27000)

# -- proximity pilot: PP -- R_pullup -- 3.3 V; the cable's coding resistor to PE.
PP_PULLUP = 1000

# -- NTC: NTC (10k @ 25 C, B = 3950) from 3.3 V to the node, 4.7 kOhm from the node to GND.
NTC_R_FIXED = 4700
NTC_R25 = 10000
NTC_BETA = 3950

# -- contactor
CONTACTOR_ACTUATION_MS = 100  # check the sense line this long after a command (coil + filter time)

# -- hardware rating
HW_MAX_A = 32
PHASES = 3

# -- ATM90E32 calibration (gain registers) of the reference board's CTs and voltage dividers
METER_UGAIN = (0x8000, 0x8000, 0x8000)
METER_IGAIN = (0x8000, 0x8000, 0x8000)


def pilot_cal():
    from drivers.pilot import PilotCal

    return PilotCal.from_divider(_CP_SENSE_R1, _CP_SENSE_R2, _CP_SENSE_R3, VREF_MV)


def cp_adc_uv(cp_mv):
    """The ADC node voltage (uV) that a CP voltage produces in this circuit (node equation)."""
    g1 = 1.0 / _CP_SENSE_R1
    g2 = 1.0 / _CP_SENSE_R2
    g3 = 1.0 / _CP_SENSE_R3
    v = (cp_mv / 1000.0 * g1 + VREF_MV / 1000.0 * g2) / (g1 + g2 + g3)
    return int(v * 1000000)
