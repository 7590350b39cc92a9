# Imported by the unix entry points (tools/mptest.py, tools/sim_entry.py, bench/mp_*.py) when
# present, i.e. on the 32-bit binaries: binds the package board.sim to the frozen copy while
# board itself (circuit, esp32_ref) still comes from the .mpy files or source on MICROPYPATH, as
# on a device. A package has a single __path__, so board.sim would otherwise be looked for next to
# board/circuit.mpy and the simulator would be counted in the heap like device code.
import board

_path = board.__path__
if _path != ".frozen/board":
    board.__path__ = ".frozen/board"
    try:
        import board.sim  # noqa: F401
    finally:
        board.__path__ = _path
