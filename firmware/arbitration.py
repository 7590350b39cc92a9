# Arbitration of the offered current: the smallest of its terms wins, and the result names the term
# that set it (the contract's `limit_src`). A pure function of its arguments, in deci-amperes;
# allocates nothing (the result goes into a caller's 2-slot list, since a returned tuple would be
# a heap object on MicroPython).
SRC_CLOUD = "cloud"
SRC_FALLBACK = "fallback"
SRC_MAX = "max"
SRC_CABLE = "cable"
SRC_THERMAL = "thermal"
SRC_OVERCURRENT = "overcurrent"
SRC_NONE = "none"

NO_TERM = -1  # a term that does not apply (no lease, no cable reading)


def arbitrate(out, enabled, standalone, max_da, lease_da, fallback_da, cable_da, thermal, penalty_da, cap_da=NO_TERM):
    """out[0] = the limit (da), out[1] = its source.

    max_da: the installation's max_current_a, already capped by the hardware. lease_da: the cloud
    lease (NO_TERM when none is valid); fallback_da applies without one. Standalone: max_da only.
    cap_da: a backend's schedule (an OCPP charging profile; NO_TERM: none), named `cloud`.
    cable_da: the cable's capacity (NO_TERM: no cable term). thermal: derating level 0..3 applied to
    what the other terms allow. penalty_da: the overcurrent cap (0 = none). A later term wins only
    when strictly lower, so ties keep the earlier source."""
    if not enabled:
        out[0] = 0
        out[1] = SRC_NONE
        return
    if standalone:
        lim = max_da
        src = SRC_MAX
    else:
        if lease_da != NO_TERM:
            lim = lease_da
            src = SRC_CLOUD
        else:
            lim = fallback_da
            src = SRC_FALLBACK
        if max_da < lim:
            lim = max_da
            src = SRC_MAX
    if cap_da != NO_TERM and cap_da < lim:
        lim = cap_da
        src = SRC_CLOUD
    if cable_da != NO_TERM and cable_da < lim:
        lim = cable_da
        src = SRC_CABLE
    if thermal:
        t = 0 if thermal == 3 else (lim >> 1 if thermal == 1 else lim >> 2)
        if t < lim:
            lim = t
            src = SRC_THERMAL
    if penalty_da and penalty_da < lim:
        lim = penalty_da
        src = SRC_OVERCURRENT
    out[0] = lim
    out[1] = src
