# Frozen into the 32-bit unix binaries (tools/unix32/sim.py) for the heap_lock proofs and the
# 32-bit bench: the simulated CP ADC without big ints. board/sim/plant.py's read_cp draws its noise
# from an LCG that multiplies a 31-bit state by 1103515245, which on a 32-bit port (small ints end
# at 2**30) allocates a big int per conversion: the simulator would allocate under heap_lock(), not
# the firmware. This is the same conversion with a 16-bit noise generator; it belongs in plant.py
# (reported), and goes when plant.py's own read_cp is allocation-free on 32 bits.
from board.sim import plant as _plant


def safe_cp_noise(plant):
    """Replace plant.read_cp by an allocation-free one; call before SimBoard(clock, plant) binds it."""
    pwm = _plant._MODE_PWM
    st = [(plant._rng & 0xFFFF) or 1]

    def read_cp():
        if plant._ticks is not None:
            plant.sync(plant._ticks())
        t = plant._adc_us + plant.adc_conv_us
        plant._adc_us = t
        if plant._cp_mode == pwm and t % plant._period_us >= plant._pwm_hi_us:
            v = plant._cp_lo_uv
        else:
            v = plant._cp_hi_uv
        s = (st[0] * 75 + 74) % 65537  # ZX81 LCG: every product < 2**23
        st[0] = s
        n = plant.cp_noise_uv
        return v + s % (2 * n + 1) - n

    plant.read_cp = read_cp
    return plant
