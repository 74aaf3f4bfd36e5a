"""Progress of long steps (auditor.progress) as a CI log shows it, where stderr is no terminal: the step's size
when it starts, a line at most every interval, and its end."""

from __future__ import annotations

import io
import time

from auditor.progress import Progress, progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_log_gets_the_start_periodic_lines_and_the_end() -> None:
    log = io.StringIO()
    with Progress("mining", 5, file=log, interval=0.05) as shown:
        for _ in range(5):
            time.sleep(0.03)
            shown.update()
    lines = log.getvalue().splitlines()
    assert lines[0] == "mining: 0/5 (0 s)" and lines[-1].startswith("mining: 5/5 (")
    assert 3 <= len(lines) <= 2 + 5  # at least one line while running, at most one per update (0.05 s apart)
    assert [int(line.split(": ")[1].split("/")[0]) for line in lines] == sorted(int(line.split(": ")[1].split("/")[0]) for line in lines)


def test_a_terminal_gets_a_bar_and_nothing_is_shown_when_not_asked() -> None:
    terminal, log = Terminal(), io.StringIO()
    assert list(progress(range(3), "curve", show=True)) == [0, 1, 2]
    with Progress("importance", 3, file=terminal) as shown:
        shown.update(3)
    assert "importance" in terminal.getvalue() and "\r" in terminal.getvalue()  # tqdm's bar
    with Progress("quiet", 3, show=False, file=log) as shown:
        shown.update(3)
    assert log.getvalue() == ""
