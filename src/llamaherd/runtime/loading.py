"""How far a llama-server has got loading its model, read from its own log.

llama-server prints one line per stage (the model's metadata, its tensors, the context,
the warm-up run, the slots) and, while it reads tensors, a dot per percent on one line
(`.....`, shown only at higher verbosity). Each stage is a step of the fraction; the dots
fill the tensor stage as they come, since the log reader sees a line as it grows.
"""

from __future__ import annotations

from dataclasses import dataclass

# (what the line contains, the stage it starts, the fraction done when it appears);
# checked in order, so the later stage wins when a line names two.
STAGES = (
    ("server is listening", "ready", 1.0),
    ("listening on", "ready", 1.0),
    ("model loaded", "ready", 1.0),
    ("load_model: initializing", "starting slots", 0.95),
    ("warming up the model", "warming up", 0.85),
    ("llama threadpool init", "warming up", 0.85),
    ("llama_context: constructing", "creating context", 0.8),
    ("load_tensors:", "reading tensors", 0.15),
    ("llama_model_loader: loaded meta data", "reading metadata", 0.1),
    ("fitting params to device memory", "fitting to memory", 0.05),
    ("loading model '", "loading model", 0.02),
)
TENSORS_FROM, TENSORS_TO = 0.15, 0.8  # the share the tensor dots fill


@dataclass
class LoadProgress:
    fraction: float = 0.0
    stage: str = "starting"

    def take(self, line: str) -> None:
        """A complete log line."""
        for marker, stage, fraction in STAGES:
            if marker in line:
                self._reach(stage, fraction)
                return
        self.partial(line)

    def partial(self, text: str) -> None:
        """A line so far (or whole): a run of dots is that many percent of the tensors."""
        dots = len(text) - len(text.rstrip("."))
        if dots >= 2 and self.fraction < TENSORS_TO:
            share = min(dots, 100) / 100
            self._reach("reading tensors", TENSORS_FROM + share * (TENSORS_TO - TENSORS_FROM))

    def _reach(self, stage: str, fraction: float) -> None:
        if fraction >= self.fraction:  # never backwards (a stage line seen twice)
            self.fraction, self.stage = round(fraction, 3), stage
