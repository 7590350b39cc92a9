# ATM90E32 driver against the register-level chip model: begin/verify, 1- and 3-phase loads, a
# lifetime counter that never decreases, garbage on the bus, an energy register wrap, a chip reset
# mid-session, impossible values.
from board.sim.clock import VirtualClock
from board.sim.plant import Plant
from board.sim.sim_meter_rig import meter_on_plant
from drivers import atm90e32 as R


def charging(phases=3, duty_pm=267, start_ms=0):
    clock = VirtualClock(start_ms)
    plant = Plant(clock)
    m = meter_on_plant(plant)
    assert m.begin() and m.ok and m.error is None
    plant.ev_op({"op": "plug", "cable_a": 32, "phases": phases, "max_a": 32})
    plant.pwm_write(25, 1000, 65535 * duty_pm // 1000, True)
    clock.advance(600)
    plant.pin_write(26, 1)
    clock.advance(2000)
    return clock, plant, m


def run(clock, m, seconds, step_ms=1000):
    for _ in range(seconds * 1000 // step_ms):
        clock.advance(step_ms)
        m.read(clock.ticks_ms())


def test_begin_writes_and_verifies_config():
    clock = VirtualClock(0)
    plant = Plant(clock)
    m = meter_on_plant(plant)
    assert not m.ok and m.error == "meter_not_started"
    assert m.begin()
    chip = plant.meter
    assert chip.regs[R.METER_EN] == 1 and chip.regs[R.UGAIN[2]] == 0x8000
    assert chip.cfg_acc == 0  # locked again
    assert m.read(clock.ticks_ms()) and m.ok


def test_three_phase_load():
    clock, plant, m = charging(phases=3)
    run(clock, m, 600)
    assert m.ok
    for ph in range(3):
        assert abs(m.i_a[ph] - 16.0) < 0.01 and m.i_da[ph] == 160
        assert 225 < m.v_v[ph] < 235
    assert abs(m.p_w - 3 * 16 * 230) < 150
    assert abs(m.energy_wh - plant.energy_wh) <= 2  # 10 min at 11 kW ~ 1.8 kWh
    assert 1700 < m.energy_wh < 1900


def test_single_phase_load():
    clock, plant, m = charging(phases=1)
    run(clock, m, 60)
    assert m.i_da == [160, 0, 0] and abs(m.p_w - 16 * 230) < 60


def test_energy_never_decreases_and_restores():
    clock, plant, m = charging()
    m.set_energy_wh(1234567)
    last = m.energy_wh
    for _ in range(120):
        clock.advance(1000)
        m.read(clock.ticks_ms())
        assert m.energy_wh >= last
        last = m.energy_wh
    assert 1234567 + 360 < m.energy_wh < 1234567 + 380  # 2 min at ~11 kW


def test_garbage_on_the_bus_keeps_last_good_values_and_invents_no_energy():
    clock, plant, m = charging()
    run(clock, m, 10)
    good_v = list(m.v_v)
    for byte in (0xFF, 0x00, -1):
        plant.meter.garbage(byte)
        e0 = m.energy_wh
        for _ in range(5):
            clock.advance(1000)
            assert not m.read(clock.ticks_ms())
            assert m.error in ("meter_bus", "meter_crc", "meter_range"), m.error
            assert m.energy_wh == e0 and m.v_v == good_v
        plant.meter.garbage(None)
        clock.advance(1000)
        assert m.read(clock.ticks_ms()) and m.ok, m.error
    # counts that arrived while the bus was bad are not lost unless the chip cleared them
    assert abs(m.energy_wh - plant.energy_wh) < 60


def test_single_garbled_frame_is_caught_by_readback():
    clock, plant, m = charging()
    run(clock, m, 5)
    plant.meter.garbage(0x5A, frames=1)  # one bad reply (MeterEn read)
    clock.advance(1000)
    assert not m.read(clock.ticks_ms()) and m.error == "meter_bus"
    clock.advance(1000)
    assert m.read(clock.ticks_ms())


def test_energy_register_wrap_between_far_apart_reads():
    clock, plant, m = charging()
    run(clock, m, 5)
    e0 = m.energy_wh
    t0 = plant.energy_wh
    clock.advance(120 * 1000)  # 2 min at 11 kW = 367 Wh = 117k counts: wraps the 16-bit register
    assert m.read(clock.ticks_ms()), m.error
    assert abs((m.energy_wh - e0) - (plant.energy_wh - t0)) <= 2


def test_chip_reset_mid_session_neither_loses_the_counter_nor_double_counts():
    clock, plant, m = charging()
    run(clock, m, 60)
    before = m.energy_wh
    clock.advance(500)
    plant.meter.chip_reset()
    clock.advance(500)
    m.read(clock.ticks_ms())
    assert m.resets == 1 and m.ok
    assert plant.meter.regs[R.METER_EN] == 1  # reconfigured
    assert before <= m.energy_wh <= before + 3
    run(clock, m, 60)
    # only the counts between the last read and the reset (< 1 s) are lost
    assert abs(m.energy_wh - plant.energy_wh) <= 5
    assert m.ok


def test_crc_error_reconfigures():
    clock, plant, m = charging()
    run(clock, m, 3)
    plant.meter.corrupt(R.MMODE0, 0x0001)
    clock.advance(1000)
    assert not m.read(clock.ticks_ms()) and m.error == "meter_crc"
    assert plant.meter.regs[R.MMODE0] == 0x0087
    clock.advance(1000)
    assert m.read(clock.ticks_ms())


class FixedRegs:
    """A hand-built SPI fake: registers from a dict, LastSPIData tracked like the chip."""

    def __init__(self, regs):
        self.regs = regs
        self.last = 0

    def write_readinto(self, tx, rx):
        addr = ((tx[0] & 0x7F) << 8) | tx[1]
        if tx[0] & 0x80:
            v = self.last if addr == R.LAST_SPI_DATA else self.regs.get(addr, 0)
            if addr != R.LAST_SPI_DATA:
                self.last = v
            rx[2] = v >> 8
            rx[3] = v & 0xFF
        else:
            self.last = (tx[2] << 8) | tx[3]


class CS:
    def value(self, v=None):
        return 1


def test_impossible_values_are_refused():
    regs = {R.METER_EN: 1, R.URMS[0]: 23000, R.URMS[1]: 23000, R.URMS[2]: 31000, R.AP_ENERGY_T: 10}
    m = R.ATM90E32(FixedRegs(regs), CS())
    m._crc = 0
    assert not m.read(0) and m.error == "meter_range" and m.energy_wh == 0
    regs[R.URMS[2]] = 23000
    regs[R.IRMS[1]] = 0xFFFF
    assert not m.read(1000) and m.error == "meter_range"
    regs[R.IRMS[1]] = 16000
    assert m.read(2000) and m.i_da[1] == 160
    regs[R.AP_ENERGY_T] = 60000  # 187 Wh in one second: impossible
    m.read(3000)
    assert not m.ok and m.error == "meter_range"
