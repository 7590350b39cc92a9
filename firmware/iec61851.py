# IEC 61851-1 control-pilot facts used by the charging core: timing constants (design.md §4,
# Table A.6 as cited by EVerest/Tinkerforge), the PWM duty for a current, and the contract's cp
# names. Pure and allocation-free; shared by firmware/charger.py (and usable by drivers/pilot.py).

# -- timing (ms) ---------------------------------------------------------------------------------
C_STABLE_MS = 300  # state C (with PWM) must hold this long before the contactor closes
CLOSE_DEADLINE_MS = 3000  # B->C to contactor closed (requirement; the core needs ~300-600 ms)
CP_OPEN_DEBOUNCE_MS = 20  # C->B / C->A seen this long -> open (requirement: within 100 ms)
CP_INVALID_MS = 200  # cp 'X' this long while closed -> open, fault cp_invalid
PLUG_DEBOUNCE_MS = 50  # A <-> plugged (B/C/D) must hold this long to count as (un)plug
PWM_OFF_OPEN_MS = 6000  # after the PWM is removed, open at the latest after this long
MIN_OFF_MS = 10000  # contactor rests at least this long between an open and the next close
WAKE_AFTER_MS = 30000  # PWM offered this long without C (and never charged) -> wake-up
WAKE_MS = 3000  # wake-up: steady +12 V (X1) this long, then PWM again; once per plug-in
F_HOLD_MS = 300  # after a trip while charging: steady -12 V (state F) at least this long
RAISE_INTERVAL_MS = 5000  # while charging, the offered current rises at most once per 5 s
OVERCURRENT_MS = 7000  # drawing > (offered + 0.5 A) * 1.1 this long -> fault overcurrent
SELFTEST_TIMEOUT_MS = 2000  # RCD self-test result must arrive within this long
METER_FAULT_MS = 3000  # meter not ok this long -> fault meter
RETRY_MS = 30000  # auto-retry delay of retrying faults (RCD, self-test, diode, overcurrent, ...)
MAX_RETRIES = 3  # retries before a retrying fault latches

# -- temperatures (deci-degC, OpenEVSE bands) ----------------------------------------------------
TEMP_HALF_DC = 650
TEMP_QUARTER_DC = 680
TEMP_STOP_DC = 710
TEMP_RESTORE_DC = 620

MIN_SIGNAL_DA = 60  # below 6 A no PWM is signalled
MAX_SIGNAL_DA = 800


def duty_pm_for_da(da):
    """PWM duty in per-mille that advertises `da` deci-amperes (IEC 61851-1 Annex A):
    6-51 A: D% = I / 0.6; 51-80 A: D% = I / 2.5 + 64; above 80 A the 80 A duty.
    51-52.5 A have no duty of their own (the upper formula gives < 85 %, which a vehicle reads with
    the lower one): 85 % = 51 A is returned, never more than asked.
    Below 6 A there is no valid duty: returns 1000 (steady +12 V, the caller must not signal)."""
    if da < MIN_SIGNAL_DA:
        return 1000
    if da <= 510:
        return (da * 10 + 3) // 6  # da / 0.6, rounded
    if da < 525:
        return 850
    if da > MAX_SIGNAL_DA:
        da = MAX_SIGNAL_DA
    return (da * 4 + 5) // 10 + 640  # da / 2.5 + 640, rounded


def da_for_duty_pm(pm):
    """Inverse of duty_pm_for_da (what a vehicle reads from the PWM); 0 outside 8 %..97 %."""
    if pm < 80 or pm > 970:
        return 0
    if pm <= 850:
        return pm * 6 // 10
    return (pm - 640) * 25 // 10


# -- pilot modes (the output `pilot_mode`) -------------------------------------------------------
PWM = "pwm"
HIGH = "high"
LOW = "low"

# cp letters as the pilot driver reports them, and contract names
CP_A = "A"
CP_B = "B"
CP_C = "C"
CP_D = "D"
CP_E = "E"
CP_F = "F"
CP_X = "X"
CP_B1 = "B1"
CP_B2 = "B2"
CP_C1 = "C1"
CP_C2 = "C2"
