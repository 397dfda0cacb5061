"""What one command sent back: output, every stream, how it ended, and how long it took.

A :class:`Result` is built from a finished pypsrp ``PowerShell`` and holds only plain Python
values, so it can be kept, compared, pickled by a notebook and rendered as text or HTML.
"""

from __future__ import annotations

import datetime as dt
import html
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from psrpcore.types import ConsoleColor, ErrorCategory, PSInvocationState

from psbridge.errors import UnexpectedOutput
from psbridge.remote._pypsrp import to_string
from psbridge.remote.convert import PSRecord, from_wire
from psbridge.secrets import redact
from psbridge.tables import html_table

if TYPE_CHECKING:
    import pandas as pd

@dataclass(frozen=True)
class PSError:
    """One PowerShell ErrorRecord, in the terms an operator reads."""

    message: str
    category: str = "NotSpecified"
    fqid: str = ""
    target: Any = None
    target_name: str = ""
    reason: str = ""
    exception_type: str = ""
    command: str = ""
    script_name: str = ""
    line_number: int | None = None
    offset_in_line: int | None = None
    line: str = ""
    position: str = ""
    terminating: bool = False

    def describe(self) -> str:
        where = f" [{self.fqid}]" if self.fqid else ""
        return f"{self.message} ({self.category}{where})"

    def __str__(self) -> str:
        return self.describe()

    @classmethod
    def from_wire(cls, record: Any, terminating: bool = False) -> PSError:
        """From pypsrp's ErrorRecord (its fields are read one by one, all optional)."""
        exc = getattr(record, "exception", None)
        exc_message = None
        exc_type = ""
        if exc is not None:
            props = {**getattr(exc, "adapted_properties", {}), **getattr(exc, "extended_properties", {})}
            exc_message = props.get("Message")
            types = getattr(exc, "types", None) or []
            exc_type = str(types[0]).removeprefix("Deserialized.") if types else ""
        message = (
            getattr(record, "details_message", None)
            or exc_message
            or (str(record) if to_string(record) else "")
            or getattr(record, "message", None)
            or "unknown error"
        )
        cat = getattr(record, "category", None)
        category = (_enum_name(ErrorCategory, cat) or str(cat)) if isinstance(cat, int) else str(cat or "")
        return cls(
            message=str(message),
            category=category or "NotSpecified",
            fqid=str(getattr(record, "fq_error", None) or ""),
            target=from_wire(getattr(record, "target_object", None)),
            target_name=str(getattr(record, "target_name", None) or ""),
            reason=str(getattr(record, "reason", None) or ""),
            exception_type=exc_type,
            command=str(
                getattr(record, "command_name", None) or getattr(record, "invocation_name", None) or ""
            ),
            script_name=str(getattr(record, "invocation_script_name", None) or ""),
            line_number=getattr(record, "invocation_script_line_number", None),
            offset_in_line=getattr(record, "invocation_offset_in_line", None),
            line=str(getattr(record, "invocation_line", None) or ""),
            position=str(getattr(record, "invocation_position_message", None) or ""),
            terminating=terminating,
        )


@dataclass(frozen=True)
class InformationMessage:
    """An information record: Write-Information data, or Write-Host text with its colours."""

    text: str
    source: str = ""
    tags: tuple[str, ...] = ()
    foreground: str | None = None
    background: str | None = None
    no_newline: bool = False
    time: dt.datetime | None = None

    @property
    def is_host(self) -> bool:
        """Written by Write-Host (PowerShell tags those records PSHOST)."""
        return "PSHOST" in self.tags

    @classmethod
    def from_wire(cls, record: Any) -> InformationMessage:
        data = from_wire(getattr(record, "message_data", None))
        fg = bg = None
        no_newline = False
        if isinstance(data, PSRecord) and "Message" in data:
            text = str(data.get("Message") or "")
            fg = _colour(data.get("ForegroundColor"))
            bg = _colour(data.get("BackgroundColor"))
            no_newline = bool(data.get("NoNewLine") or False)
        elif isinstance(data, PSRecord):
            text = data.to_string or str(dict(data))
        else:
            text = "" if data is None else str(data)
        tags = tuple(str(t) for t in (getattr(record, "tags", None) or []))
        when = getattr(record, "time_generated", None)
        return cls(
            text=text,
            source=str(getattr(record, "source", None) or ""),
            tags=tags,
            foreground=fg,
            background=bg,
            no_newline=no_newline,
            time=when if isinstance(when, dt.datetime) else None,
        )


def _colour(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        # -1 is the host's default colour: no colour of its own.
        return _enum_name(ConsoleColor, value) if value >= 0 else None
    text = str(value)
    return None if text in ("", "-1") else text


@dataclass(frozen=True)
class Progress:
    activity: str
    status: str
    percent_complete: int = -1
    activity_id: int = 0
    current_operation: str = ""

    @classmethod
    def from_wire(cls, record: Any) -> Progress:
        return cls(
            activity=str(getattr(record, "activity", "") or ""),
            status=str(getattr(record, "description", "") or ""),
            percent_complete=_int(getattr(record, "percent_complete", None), -1),
            activity_id=int(getattr(record, "activity_id", 0) or 0),
            current_operation=str(getattr(record, "current_operation", "") or ""),
        )


# Colours as a console would show them, for the HTML view.
_CSS = {
    "Black": "#000000", "DarkBlue": "#000080", "DarkGreen": "#008000", "DarkCyan": "#008080",
    "DarkRed": "#800000", "DarkMagenta": "#800080", "DarkYellow": "#808000", "Gray": "#808080",
    "DarkGray": "#555555", "Blue": "#0000ff", "Green": "#008000", "Cyan": "#008b8b", "Red": "#d00000",
    "Magenta": "#c000c0", "Yellow": "#b8860b", "White": "#555555",
}


@dataclass
class Result:
    """Everything one command sent back.

    ``state`` is the pipeline's final state (Completed, Failed, Stopped); ``exit_code`` is
    ``$LASTEXITCODE`` when the bridge read it (scripts), else None.
    """

    command: str
    server: str
    output: list[Any] = field(default_factory=list)
    errors: list[PSError] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    verbose: list[str] = field(default_factory=list)
    debug: list[str] = field(default_factory=list)
    information: list[InformationMessage] = field(default_factory=list)
    progress: list[Progress] = field(default_factory=list)
    state: str = "Completed"
    exit_code: int | None = None
    started: dt.datetime | None = None
    duration: dt.timedelta = dt.timedelta(0)

    @property
    def had_errors(self) -> bool:
        return bool(self.errors) or self.state == "Failed"

    @property
    def ok(self) -> bool:
        return not self.had_errors and self.state == "Completed" and not self.exit_code

    @property
    def host_text(self) -> str:
        """What Write-Host printed, as a console would show it."""
        parts = []
        for m in self.information:
            if m.is_host:
                parts.append(m.text if m.no_newline else m.text + "\n")
        return "".join(parts)

    def messages(self) -> list[str]:
        """The human-readable lines the command wrote: Write-Host/information text and string output."""
        lines: list[str] = [m.text for m in self.information if m.text]
        lines += [o for o in self.output if isinstance(o, str)]
        lines += [w for w in self.warnings]
        lines += [e.message for e in self.errors]
        return lines

    def scalar(self) -> Any:
        """The single output value (None when there is none); more than one is :class:`UnexpectedOutput`."""
        if not self.output:
            return None
        if len(self.output) > 1:
            raise UnexpectedOutput(f"{self.command} on {self.server} returned {len(self.output)} objects, "
                                   "expected one", self)
        return self.output[0]

    def _output_rows(self) -> list[dict[str, Any]]:
        return [dict(o) if isinstance(o, dict) else {"Value": o} for o in self.output]

    def to_frame(self) -> pd.DataFrame:
        """Output as a DataFrame: one row per object, one column per property."""
        import pandas as pd

        return pd.DataFrame(self._output_rows())

    def errors_frame(self) -> pd.DataFrame:
        import pandas as pd

        cols = ["message", "category", "fqid", "target_name", "command", "position", "terminating"]
        return pd.DataFrame([{c: getattr(e, c) for c in cols} for e in self.errors], columns=cols)

    # --- rendering ---------------------------------------------------------------------------

    def summary(self) -> str:
        secs = self.duration.total_seconds()
        code = f", exit code {self.exit_code}" if self.exit_code is not None else ""
        return (
            f"{self.command} on {self.server}: {self.state}{code}, {len(self.output)} output, "
            f"{len(self.errors)} error(s), {len(self.warnings)} warning(s), {secs:.3f} s"
        )

    def __str__(self) -> str:
        lines = [self.summary()]
        lines += [f"  | {t}" for t in self.host_text.splitlines()]
        for o in self.output:
            if not isinstance(o, str) or o not in self.host_text:
                lines.append(f"  > {o}")
        lines += [f"  WARNING: {w}" for w in self.warnings]
        lines += [f"  VERBOSE: {v}" for v in self.verbose]
        for e in self.errors:
            lines.append(f"  ERROR: {e.describe()}")
            if e.position:
                lines += [f"         {p}" for p in e.position.splitlines()]
        return redact("\n".join(lines))

    def _repr_html_(self) -> str:
        colour = "#2e7d32" if self.ok else "#c62828"
        h = [
            f'<div class="psbridge-result"><div style="font-weight:bold;color:{colour}">'
            f"{html.escape(self.summary())}</div>"
        ]
        if self.information:
            h.append('<pre style="background:#012456;color:#eeedf0;padding:4px">')
            for m in self.information:
                style = ""
                if m.foreground:
                    style += f"color:{_CSS.get(m.foreground, '#eeedf0')};"
                if m.background:
                    style += f"background:{_CSS.get(m.background, 'transparent')};"
                text = html.escape(m.text) + ("" if m.no_newline else "\n")
                h.append(f'<span style="{style}">{text}</span>' if style else text)
            h.append("</pre>")
        if self.output:
            h.append(html_table(self._output_rows(), max_rows=50))
        for w in self.warnings:
            h.append(f'<div style="color:#b8860b">WARNING: {html.escape(w)}</div>')
        for e in self.errors:
            pos = f"<br><small>{html.escape(e.position)}</small>" if e.position else ""
            h.append(f'<div style="color:#c62828">ERROR: {html.escape(e.describe())}{pos}</div>')
        h.append("</div>")
        return redact("".join(h))


def build_result(
    ps: Any,
    command: str,
    server: str,
    started: dt.datetime,
    duration: dt.timedelta,
    cipher: Any = None,
    state: str | None = None,
) -> Result:
    """A :class:`Result` from a finished (or stopped) pypsrp ``PowerShell``."""
    streams = ps.streams
    errors = [PSError.from_wire(r) for r in streams.error]
    final_state = state or _state_name(ps.state)
    if final_state == "Failed" and errors:
        last = errors[-1]
        errors[-1] = PSError(**{**last.__dict__, "terminating": True})
    return Result(
        command=command,
        server=server,
        output=[from_wire(o, cipher) for o in ps.output],
        errors=errors,
        warnings=[str(getattr(w, "message", w)) for w in streams.warning],
        verbose=[str(getattr(v, "message", v)) for v in streams.verbose],
        debug=[str(getattr(d, "message", d)) for d in streams.debug],
        information=[InformationMessage.from_wire(i) for i in streams.information],
        progress=[Progress.from_wire(p) for p in streams.progress],
        state=final_state,
        started=started,
        duration=duration,
    )


def _int(value: Any, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except (TypeError, ValueError):
        return default


def _enum_name(enum: Any, value: int) -> str | None:
    """The name psrpcore gives ``value`` in a .NET enum, or None for a number it does not know."""
    try:
        return str(enum(value).name)
    except ValueError:
        return None


def _state_name(state: int) -> str:
    return _enum_name(PSInvocationState, state) or str(state)
