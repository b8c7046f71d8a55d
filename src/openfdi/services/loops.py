"""The control loops' base, under the name the services import it by: it lives in
engine/loops.py, shared with the executor's lease renewal (the engine may not import services)."""

from openfdi.engine.loops import OVERRUN_FACTOR, LoopService

__all__ = ["OVERRUN_FACTOR", "LoopService"]
