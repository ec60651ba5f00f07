"""Progress for long jobs (herd build, herd bench): bars in a terminal, lines elsewhere."""

from __future__ import annotations

from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)

from llamaherd.cli.render import err_console


class BuildProgress:
    """Rich bars in a terminal; a line every 10% elsewhere (CI logs, make). `labels`
    names the bars by phase (default: herd build's two phases)."""

    def __init__(self, enabled: bool, labels: dict[str, str] | None = None) -> None:
        self.enabled = enabled
        self.labels = labels
        self.bar: Progress | None = None
        self.tasks: dict[str, TaskID] = {}
        self.last_decile: dict[str, int] = {}

    def __enter__(self) -> BuildProgress:
        if self.enabled and err_console.is_terminal:
            self.bar = _bar()
            self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar:
            self.bar.stop()

    def __call__(self, phase: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self.bar:
            if phase not in self.tasks:
                label = "downloading llama.cpp" if phase == "download" else "compiling"
                if self.labels is not None:
                    label = self.labels.get(phase, phase)
                self.tasks[phase] = self.bar.add_task(label, total=total or None)
            self.bar.update(self.tasks[phase], completed=done, total=total or None)
            return
        decile = done * 10 // total if total else 0
        if decile != self.last_decile.get(phase):
            self.last_decile[phase] = decile
            err_console.print(f"{phase}: {decile * 10}% ({done}/{total})")


class LoadProgress:
    """`herd up`'s bar while a model loads (its stage as the label), in a terminal only:
    a script reads the answer, not a bar."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.bar: Progress | None = None
        self.task: TaskID | None = None

    def __enter__(self) -> LoadProgress:
        if err_console.is_terminal:
            self.bar = _bar(transient=True)
            self.bar.start()
            self.task = self.bar.add_task(f"loading {self.model}", total=1.0)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar:
            self.bar.stop()

    def __call__(self, fraction: float, stage: str) -> None:
        if self.bar and self.task is not None:
            label = f"loading {self.model}" + (f": {stage}" if stage else "")
            self.bar.update(self.task, completed=fraction, description=label)


def _bar(*, transient: bool = False) -> Progress:
    """A bar on stderr: label, bar, percentage, time elapsed."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=transient,
    )
