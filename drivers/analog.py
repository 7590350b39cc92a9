# Averaged ADC reading shared by the slow analog inputs (PP, NTC).


def read_mv(adc, reads):
    """Mean of `reads` ADC1 conversions in millivolts (read_uv: eFuse-calibrated on the ESP32)."""
    total = 0
    for _ in range(reads):
        total += adc.read_uv()
    return total // (reads * 1000)
