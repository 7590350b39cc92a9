# Control pilot driver: duty from current, outputs, and plateau classification against hand-built
# waveforms (noise, spikes, 10 % and 96 % duty) and against the simulated plant.
from drvfakes import FakePWM, SeqADC, pwm_wave

from board import circuit as C
from board.sim.board import SimBoard
from board.sim.clock import VirtualClock
from drivers.pilot import Pilot, PilotCal
from firmware.iec61851 import da_for_duty_pm, duty_pm_for_da

CAL = C.pilot_cal()


def test_duty_from_current_both_ranges():
    assert duty_pm_for_da(60) == 100  # 6 A -> 10 %
    assert duty_pm_for_da(100) == 167
    assert duty_pm_for_da(160) == 267  # 26.7 %
    assert duty_pm_for_da(320) == 533
    assert duty_pm_for_da(510) == 850  # 51 A -> 85 %
    assert duty_pm_for_da(630) == 892  # 63 / 2.5 + 64 = 89.2 %
    assert duty_pm_for_da(800) == 960  # 80 A -> 96 %
    assert duty_pm_for_da(1000) == 960
    assert duty_pm_for_da(59) == 1000  # below 6 A: no PWM (X1)
    assert duty_pm_for_da(0) == 1000
    assert duty_pm_for_da(520) == 850  # 51..52.5 A: never advertise more than asked
    for da in range(60, 801, 7):
        back = da_for_duty_pm(duty_pm_for_da(da))  # what a vehicle reads from the duty
        assert da - 15 <= back <= da + 3, (da, back)
        if da <= 510 or da >= 525:
            assert abs(back - da) <= 3


def test_calibration_matches_the_divider():
    assert CAL.adc_mv(12000) in (2371, 2372, 2373)
    assert CAL.adc_mv(-12000) in (697, 698, 699)
    for mv in (-12000, -8000, 0, 3000, 6000, 9000, 12000):
        assert abs(CAL.cp_mv(CAL.adc_mv(mv)) - mv) <= 20
    # every coefficient stays a small int on a 32-bit port
    assert CAL.num * 3300 < 1 << 30 and CAL.off < 1 << 30
    c2 = PilotCal.from_divider(100000, 22000, 33000, 3300)
    assert abs(c2.cp_mv(c2.adc_mv(-11000)) - (-11000)) <= 20


def test_outputs():
    pwm = FakePWM()
    p = Pilot(pwm, SeqADC([0]), CAL)
    assert pwm.f == 1000 and pwm.duty == 65535 and p.mode == "high" and p.duty_pm == 1000
    assert p.set_duty_pm(duty_pm_for_da(160)) == 267
    assert pwm.duty == 267 * 65535 // 1000 and p.mode == "pwm"
    assert p.set_duty_pm(duty_pm_for_da(50)) == 1000 and p.mode == "high" and pwm.duty == 65535
    p.set_low()
    assert pwm.duty == 0 and p.mode == "low" and p.duty_pm == 0
    inv = FakePWM()
    q = Pilot(inv, SeqADC([0]), CAL, invert=True)
    q.set_duty_pm(duty_pm_for_da(160))
    assert inv.duty == 65535 - 267 * 65535 // 1000


def sample(mode_da, high_mv, low_mv, duty_pm, **kw):
    p = Pilot(FakePWM(), SeqADC(pwm_wave(CAL, high_mv, low_mv, duty_pm, **kw)), CAL)
    if mode_da:
        p.set_duty_pm(duty_pm_for_da(mode_da))
    p.sample()
    return p


def test_states_from_plateaus_with_noise():
    for high, st in ((12000, "A"), (9000, "B"), (6000, "C"), (2900, "D"), (0, "E")):
        p = sample(160, high, -12000, 267, noise_mv=150)
        assert p.state == st, (high, p.state, p.high_mv)
        assert abs(p.high_mv - high) < 250 and abs(p.low_mv + 12000) < 250
    p = sample(0, -12000, -12000, 1000)  # steady -12 V
    p.set_low()
    p.sample()
    assert p.state == "F" and p.diode_ok is None


def test_between_bands_is_x_never_a_guess():
    for high in (10500, 7500, 4500, 1500, -3000, -6000):
        p = sample(160, high, -12000, 267)
        assert p.state == "X", (high, p.state)


def test_hysteresis_keeps_a_state_near_its_band_edge():
    wave_b = pwm_wave(CAL, 9000, -12000, 267)
    wave_edge = pwm_wave(CAL, 10150, -12000, 267)
    adc = SeqADC(wave_b)
    p = Pilot(FakePWM(), adc, CAL)
    p.set_duty_pm(duty_pm_for_da(160))
    assert p.sample() == "B"
    adc.seq = wave_edge
    assert p.sample() == "B"  # 1.15 V above B: kept
    fresh = Pilot(FakePWM(), SeqADC(wave_edge), CAL)
    fresh.set_duty_pm(duty_pm_for_da(160))
    assert fresh.sample() == "X"  # but not entered from nothing


def test_single_spikes_are_ignored():
    wave = pwm_wave(CAL, 6000, -12000, 267)
    wave[3] = 3300000  # ADC full scale
    wave[60] = 0
    p = Pilot(FakePWM(), SeqADC(wave), CAL)
    p.set_duty_pm(duty_pm_for_da(160))
    assert p.sample() == "C" and p.diode_ok is True
    assert abs(p.high_mv - 6000) < 100 and abs(p.low_mv + 12000) < 100


def test_ten_percent_duty_plateau():
    p = sample(60, 6000, -12000, 100, conv_us=23)
    assert p.state == "C" and p.diode_ok is True and abs(p.high_mv - 6000) < 100


def test_ninety_six_percent_duty_plateau():
    # 40 us of negative plateau per period: only a few of the 100 reads land on it
    p = sample(800, 6000, -12000, 960, conv_us=23)
    assert p.state == "C" and p.diode_ok is True and abs(p.low_mv + 12000) < 100


def test_diode_check():
    p = sample(160, 8790, -8790, 267)  # shorted diode: negative plateau loaded by 2.74 kOhm
    assert p.state == "B" and p.diode_ok is False
    p = sample(160, 6000, -5600, 267)
    assert p.diode_ok is False
    p = Pilot(FakePWM(), SeqADC(pwm_wave(CAL, 9000, -12000, 267)), CAL)
    p.sample()  # steady +12 V (mode high): no diode verdict
    assert p.diode_ok is None


def test_against_the_simulated_plant():
    clock = VirtualClock(0)
    b = SimBoard(clock)
    pl = b.plant
    pilot = b.pilot

    def settle(ms=700):
        clock.advance(ms)
        return pilot.sample()

    assert settle() == "A" and pilot.diode_ok is None
    pl.ev_op({"op": "plug", "cable_a": 32, "phases": 3, "max_a": 32})
    assert settle() == "B"
    pilot.set_duty_pm(duty_pm_for_da(160))
    assert pl.ev_state()["duty"] == 26.7
    assert pilot.sample() == "B" and pilot.diode_ok is True
    assert settle() == "C" and pilot.diode_ok is True
    pl.ev_op({"op": "fault", "kind": "vent", "on": True})
    assert settle() == "D"
    pl.ev_op({"op": "fault", "kind": "vent", "on": False})
    pl.ev_op({"op": "fault", "kind": "diode", "on": True})
    settle()
    assert pilot.diode_ok is False
    pl.ev_op({"op": "fault", "kind": "diode", "on": False})
    pl.ev_op({"op": "fault", "kind": "cp_short", "on": True})
    assert settle() == "E"
    pl.ev_op({"op": "fault", "kind": "cp_short", "on": False})
    pilot.set_duty_pm(duty_pm_for_da(800))  # 96 %
    assert settle(5000) == "C" and pilot.diode_ok is True
    pilot.set_duty_pm(duty_pm_for_da(60))  # 10 %
    assert settle(5000) == "C" and pilot.diode_ok is True
    pilot.set_low()
    assert settle() == "F"
    pl.ev_op({"op": "unplug"})
    pilot.set_high()
    assert settle() == "A"
