# The simulated plant: what the board's ADC, pins and SPI bus see for each vehicle state, cable,
# contactor and meter situation. Expected values are computed here from the circuit's physics, not
# taken from the plant.
from board.sim.clock import VirtualClock
from board.sim.plant import Plant
from firmware.ticks import PERIOD

R1 = 180000.0  # CP sense: CP -- R1 -- node -- R2 -- 3.3 V, node -- R3 -- GND
R2 = 27000.0
R3 = 27000.0


def adc_mv(cp_v):
    g1, g2, g3 = 1 / R1, 1 / R2, 1 / R3
    return 1000 * (cp_v * g1 + 3.3 * g2) / (g1 + g2 + g3)


def vehicle_high_v(r_vehicle, diode=True):
    k = r_vehicle / (r_vehicle + 1000.0)
    return 0.7 + 11.3 * k if diode else 12 * k


def par(a, b):
    return a * b / (a + b)


def new(start_ms=0, **kw):
    clock = VirtualClock(start_ms)
    return clock, Plant(clock, **kw)


def pwm(plant, duty_u16):
    plant.pwm_write(25, 1000, duty_u16, True)  # PIN_CP_PWM


def burst(plant, n=200):
    vals = [plant.read_cp() / 1000 for _ in range(n)]
    return max(vals), min(vals), vals


def near(a, b, tol):
    return abs(a - b) <= tol


def test_cp_plateaus_at_the_adc_for_each_vehicle_state():
    clock, p = new()
    pwm(p, 65535 * 267 // 1000)  # 16 A
    hi, lo, _ = burst(p)
    assert near(hi, adc_mv(12), 3) and near(lo, adc_mv(-12), 3)  # state A
    assert near(adc_mv(12), 2372, 2) and near(adc_mv(-12), 698, 2)
    assert p.ev_op({"op": "plug", "cable_a": 32, "phases": 3, "max_a": 32, "charge": False}) is None
    hi, lo, _ = burst(p)
    assert near(hi, adc_mv(vehicle_high_v(2740)), 3)  # B: 9 V
    assert near(vehicle_high_v(2740), 9.0, 0.1)
    assert near(lo, adc_mv(-12), 3)
    p.ev_op({"op": "charge", "on": True})
    clock.advance(600)
    hi, lo, _ = burst(p)
    assert p.ev.s2
    assert near(hi, adc_mv(vehicle_high_v(par(2740, 1300))), 3)  # C: 6 V
    assert near(vehicle_high_v(par(2740, 1300)), 6.0, 0.1)
    p.ev_op({"op": "fault", "kind": "vent", "on": True})
    hi, lo, _ = burst(p)
    assert near(hi, adc_mv(vehicle_high_v(par(2740, 270))), 3)  # D: 270 Ohm instead of 1.3 kOhm
    assert near(vehicle_high_v(par(2740, 270)), 3.0, 0.1)
    p.ev_op({"op": "fault", "kind": "vent", "on": False})
    p.ev_op({"op": "fault", "kind": "diode", "on": True})
    hi, lo, _ = burst(p)
    r = par(2740, 1300)
    assert near(hi, adc_mv(vehicle_high_v(r, diode=False)), 3)
    assert near(lo, adc_mv(-12 * r / (r + 1000)), 3)  # negative plateau loaded by the vehicle
    p.ev_op({"op": "fault", "kind": "diode", "on": False})
    p.ev_op({"op": "fault", "kind": "cp_short", "on": True})
    hi, lo, _ = burst(p)
    assert near(hi, adc_mv(0), 3) and near(lo, adc_mv(0), 3)  # E


def test_steady_levels_and_duty_fraction():
    clock, p = new()
    pwm(p, 65535)
    hi, lo, _ = burst(p)
    assert near(lo, adc_mv(12), 3)  # steady +12 V: no negative plateau
    pwm(p, 0)
    hi, lo, _ = burst(p)
    assert near(hi, adc_mv(-12), 3)  # steady -12 V (F)
    for pm in (100, 500, 960):
        pwm(p, 65535 * pm // 1000)
        mid = adc_mv(0) * 1000
        high = 0
        for _ in range(2000):
            if p.read_cp() > mid:
                high += 1
        assert near(high / 2000, pm / 1000, 0.03), (pm, high)
    assert p.ev_state()["duty"] == 96.0


def test_adc_reads_advance_time_by_conversion_time_not_host_speed():
    clock, p = new(adc_conv_us=25)
    pwm(p, 65535 // 10)
    a = [p.read_cp() > adc_mv(0) * 1000 for _ in range(80)]  # 80 x 25 us = 2 periods
    b_clock, q = new(adc_conv_us=25)
    pwm(q, 65535 // 10)
    b = [q.read_cp() > adc_mv(0) * 1000 for _ in range(80)]
    assert a == b  # deterministic
    assert 4 <= a.count(True) <= 12  # about 10 % of 80


def test_pp_resistance_per_cable():
    clock, p = new()
    vref = 3300
    p.ev_op({"op": "plug", "cable_a": None, "phases": 3, "max_a": 32})
    assert p.pp_ohms() is None
    assert p.read_pp() >= 3100000  # open: at the rail (ADC saturates)
    for cable, ohms in ((13, 1500), (20, 680), (32, 220), (63, 100)):
        p.ev_op({"op": "plug", "cable_a": cable, "phases": 3, "max_a": 32})
        assert p.pp_ohms() == ohms
        uv = sum(p.read_pp() for _ in range(8)) / 8
        assert near(uv / 1000, vref * ohms / (ohms + 1000), 4), (cable, uv)
    p.ev_op({"op": "unplug"})
    assert p.pp_ohms() is None


def _contactor(p, on):
    p.pin_write(26, 1 if on else 0)  # PIN_CONTACTOR


def test_contactor_delay_weld_and_stuck_open():
    clock, p = new(contactor_close_ms=30, contactor_open_ms=20)
    _contactor(p, True)
    clock.advance(29)
    assert p.read_contactor_sense() == 0
    clock.advance(1)
    assert p.read_contactor_sense() == 1 and p.ev_state()["contactor_out"]
    p.ev_op({"op": "fault", "kind": "weld", "on": True})
    _contactor(p, False)
    clock.advance(100)
    assert p.read_contactor_sense() == 1  # welded: stays live
    p.ev_op({"op": "fault", "kind": "weld", "on": False})
    clock.advance(1)
    assert p.read_contactor_sense() == 0
    p.ev_op({"op": "fault", "kind": "stuck_open", "on": True})
    _contactor(p, True)
    clock.advance(200)
    assert p.read_contactor_sense() == 0
    p.ev_op({"op": "fault", "kind": "stuck_open", "on": False})
    clock.advance(1)
    assert p.read_contactor_sense() == 1


def _charging(p, clock, phases=3, max_a=32, duty_pm=267):
    p.ev_op({"op": "plug", "cable_a": 32, "phases": phases, "max_a": max_a})
    pwm(p, 65535 * duty_pm // 1000)
    clock.advance(600)
    _contactor(p, True)
    clock.advance(2000)
    p.update()


def test_vehicle_draws_offer_and_follows_with_delays():
    clock, p = new(follow_ms=3000, rise_ms=1000)
    _charging(p, clock)
    assert p.ev_state()["draw_a"] == [16.0, 16.0, 16.0]
    pwm(p, 65535 * 100 // 1000)  # 6 A
    clock.advance(2900)
    p.update()
    assert p.draw_a[0] == 16.0  # still following the old offer
    clock.advance(200)
    p.update()
    assert p.draw_a == [6.0, 6.0, 6.0]
    pwm(p, 65535 * 500 // 1000)  # 30 A offered
    clock.advance(1100)
    p.update()
    assert p.draw_a == [30.0, 30.0, 30.0]
    pwm(p, 65535)  # PWM removed: vehicle stops and opens S2
    clock.advance(1100)
    st = p.ev_state()
    assert not st["s2"] and st["draw_a"] == [0.0, 0.0, 0.0]


def test_single_phase_vehicle_and_max_a():
    clock, p = new()
    _charging(p, clock, phases=1, max_a=10)
    assert p.draw_a == [10.0, 0.0, 0.0]


def test_draw_override_ignores_pwm():
    clock, p = new()
    _charging(p, clock)
    p.ev_op({"op": "draw", "a": 25})
    assert p.draw_a == [25.0, 25.0, 25.0]
    p.ev_op({"op": "draw", "a": None})
    assert p.draw_a == [16.0, 16.0, 16.0]


def test_phase_relay_cuts_l2_l3():
    clock, p = new()
    _charging(p, clock)
    p.pin_write(27, 0)  # PIN_PHASE_RELAY off: L1 only
    clock.advance(100)
    p.update()
    assert p.draw_a == [16.0, 0.0, 0.0]


def test_sleeping_vehicle_needs_a_wake_up():
    clock, p = new(wake_ms=3000)
    p.ev_op({"op": "plug", "cable_a": 32, "phases": 3, "max_a": 32, "sleep": True})
    pwm(p, 65535 * 267 // 1000)
    clock.advance(30000)
    assert not p.ev_state()["s2"]
    pwm(p, 65535)  # X1 for 1 s only: not enough
    clock.advance(1000)
    pwm(p, 65535 * 267 // 1000)
    clock.advance(5000)
    assert not p.ev_state()["s2"]
    pwm(p, 0)  # steady -12 V (F) for 3 s, then PWM again
    clock.advance(3000)
    pwm(p, 65535 * 267 // 1000)
    clock.advance(600)
    assert p.ev_state()["s2"]


def test_meter_registers_follow_load_and_energy_is_clear_on_read():
    from drivers import atm90e32 as R

    clock, p = new()
    m = p.meter
    m.write_reg(R.CFG_REG_ACC_EN, R.CFG_UNLOCK)
    m.write_reg(R.METER_EN, 1)
    m.write_reg(R.UGAIN[0], 0x8000)
    for ph in range(3):
        m.write_reg(R.UGAIN[ph], 0x8000)
        m.write_reg(R.IGAIN[ph], 0x8000)
    m.write_reg(R.CFG_REG_ACC_EN, 0)
    _charging(p, clock, phases=1)
    m.read_reg(R.AP_ENERGY_T)
    e0 = p.energy_wh
    clock.advance(3600 * 1000)
    p.update()
    assert near(m.read_reg(R.IRMS[0]), 16000, 1) and m.read_reg(R.IRMS[1]) == 0
    u = m.read_reg(R.URMS[0])
    assert 22000 < u < 24000
    raw = (m.read_reg(R.PMEAN_T) << 16) | m.read_reg(R.PMEAN_T_LSB)
    assert near(raw * R.PT_W_PER_LSB, u / 100 * 16, 2)
    # 1 h at ~3.7 kW is far more than 16 bits of 1/320 Wh: the register wrapped
    wh = p.energy_wh - e0
    counts = m.read_reg(R.AP_ENERGY_T)
    assert counts == int(wh * 320) & 0xFFFF or counts == (int(wh * 320) - 1) & 0xFFFF
    assert m.read_reg(R.AP_ENERGY_T) == 0  # cleared by the read
    assert m.read_reg(R.LAST_SPI_DATA) == 0
    clock.advance(1000)
    p.update()
    assert near(m.read_reg(R.AP_ENERGY_T), 16 * u / 100 / 3600 * 320, 2)


def test_meter_chip_reset_and_config_lock():
    from drivers import atm90e32 as R

    clock, p = new()
    m = p.meter
    m.write_reg(R.METER_EN, 1)  # locked: ignored
    assert m.read_reg(R.METER_EN) == 0
    m.write_reg(R.CFG_REG_ACC_EN, R.CFG_UNLOCK)
    m.write_reg(R.METER_EN, 1)
    m.write_reg(R.CFG_REG_ACC_EN, 0)
    assert m.read_reg(R.METER_EN) == 1 and m.read_reg(R.CRC_ERR_STATUS) == 0
    m.corrupt(R.MMODE0, 0x1234)
    assert m.read_reg(R.CRC_ERR_STATUS) == 1
    m.chip_reset()
    assert m.read_reg(R.METER_EN) == 0 and m.read_reg(R.URMS[0]) == 0


def test_rcd_module_and_its_test_input():
    clock, p = new(rcd_trip_ms=25, rcd_release_ms=15)
    assert p.read_rcd_ac() == 0 and p.read_rcd_dc() == 0
    p.pin_write(4, 1)  # PIN_RCD_TEST
    clock.advance(24)
    assert p.read_rcd_dc() == 0
    clock.advance(1)
    assert p.read_rcd_dc() == 1
    p.pin_write(4, 0)
    clock.advance(15)
    assert p.read_rcd_dc() == 0
    p.ev_op({"op": "fault", "kind": "rcd_selftest", "on": True})
    p.pin_write(4, 1)
    clock.advance(500)
    assert p.read_rcd_dc() == 0
    p.pin_write(4, 0)
    p.ev_op({"op": "fault", "kind": "rcd_ac", "on": True})
    assert p.read_rcd_ac() == 1
    p.ev_op({"op": "fault", "kind": "rcd_dc", "on": True})
    assert p.read_rcd_dc() == 1


def test_temperature_rises_with_current_and_overtemp():
    clock, p = new(ambient_c=25.0, temp_rise_c=25.0, temp_tau_s=120.0)
    _charging(p, clock, duty_pm=533)  # 32 A
    clock.advance(1200 * 1000)
    p.read_ntc()
    assert 49.0 < p.temp_c <= 50.0
    p.ev_op({"op": "fault", "kind": "overtemp", "on": True})
    uv = p.read_ntc()
    r75 = 10000 * 2.718281828 ** (3950 * (1 / 348.15 - 1 / 298.15))
    assert near(uv / 1000, 3300 * 4700 / (4700 + r75), 4)


def test_ev_ops_reject_bad_input_without_raising():
    clock, p = new()
    bad = [None, [], "plug", {}, {"op": "fly"}, {"op": "plug", "cable_a": 40}, {"op": "plug", "phases": 2},
           {"op": "plug", "max_a": "x"}, {"op": "plug", "cable_a": True}, {"op": "charge"},
           {"op": "charge", "on": 1}, {"op": "draw"}, {"op": "draw", "a": -1}, {"op": "draw", "a": "5"},
           {"op": "fault", "kind": "meteor", "on": True}, {"op": "fault", "kind": "diode"},
           {"op": "tag", "id": ""}, {"op": "tag", "id": 5}, {"op": "tag"}]
    for doc in bad:
        err = p.ev_op(doc)
        assert isinstance(err, str) and err, doc
    assert not p.ev_state()["plugged"]


def test_ev_state_and_tag():
    clock, p = new()
    st = p.ev_state()
    assert sorted(st) == ["contactor_out", "cp_high_v", "cp_low_v", "draw_a", "duty", "plugged", "s2"]
    assert p.ev_op({"op": "tag", "id": "04A1B2"}) is None
    assert p.pop_tag() == "04A1B2"
    assert p.pop_tag() is None


def test_virtual_clock_across_the_ticks_wrap():
    clock, p = new(start_ms=PERIOD - 1000)
    _charging(p, clock)  # crosses the wrap
    assert clock.ticks_ms() < 5000
    assert p.t_ms == 2600
    assert p.draw_a == [16.0, 16.0, 16.0]
    clock.advance(3600 * 1000)
    p.update()
    assert 3 * 16 * 229 < p.energy_wh < 3 * 16 * 231
    clock.sleep_ms(5)
    assert clock.elapsed_ms == 2600 + 3600 * 1000 + 5
