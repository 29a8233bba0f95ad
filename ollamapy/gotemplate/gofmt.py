"""Go's ``fmt`` as templates print through it.

Template output goes through ``fmt.Fprint``, and ``print``/``printf``/``println`` are
``fmt.Sprint``/``Sprintf``/``Sprintln``: this module ports the parts of Go's fmt/print.go
and fmt/format.go that those reach — the ``%v`` rendering of every kind of value
(``[a b]``, ``map[k:v]``, ``{f1 f2}``, ``<nil>``), verbs with flags, width and precision,
and the ``%!d(string=x)`` error forms. Number formatting and quoting are Go's ``strconv``,
shared with the rest of ollamapy in :mod:`ollamapy.golang`. Values are interpreter
values (see :mod:`.values`).
"""

from __future__ import annotations

from typing import Any

from ollamapy.golang import (
    can_backquote,
    format_float,
    go_bytes,
    go_string,
    is_print,
    quote,
    quote_rune,
    quote_rune_to_ascii,
    quote_to_ascii,
)

from .gotypes import (
    INVALID,
    Iface,
    Kind,
    Ptr,
    Uint8,
    as_value,
    find_method,
    kind_of,
    struct_fields,
    type_of,
)

__all__ = [
    "elements",
    "go_len",
    "map_items",
    "sprint",
    "sprintf",
    "sprintln",
]

_LOWER = "0123456789abcdefx"
_UPPER = "0123456789ABCDEFX"


# --- reflection helpers shared with the interpreter ---------------------------------


def map_items(m: Any) -> list[tuple[Any, Any]]:
    """A map's (key, value) pairs as interpreter values, in Go's sorted key order."""
    elem = type_of(m).elem
    assert elem is not None
    key_type = type_of(m).key
    pairs = [(k, as_value(v, elem)) for k, v in m.items()]
    if key_type is not None and key_type.kind == Kind.INTERFACE:
        return sorted(pairs, key=lambda kv: (type_of(kv[0]).name, kv[0]))
    return sorted(pairs, key=lambda kv: kv[0])


def elements(v: Any) -> list[Any]:
    """The elements of a slice-kinded value as interpreter values."""
    t = type_of(v)
    assert t.elem is not None
    if isinstance(v, (bytes, bytearray)):
        return [Uint8(b) for b in v]
    return [as_value(x, t.elem) for x in v]


def go_len(v: Any) -> int:
    """``len`` of a string (in UTF-8 bytes), slice or map."""
    if isinstance(v, str):
        return len(go_bytes(v))
    return len(v)


def _from_bytes(b: bytes) -> str:
    return b.decode("utf-8", "surrogateescape")


# --- fmt ------------------------------------------------------------------------------


class _Printer:
    """One ``pp``: the output buffer and the flags of the verb being formatted."""

    def __init__(self) -> None:
        self.buf: list[str] = []
        self.clear_flags()
        self.erroring = False
        self.reordered = False
        self.good_arg_num = True

    def clear_flags(self) -> None:
        self.wid = 0
        self.prec = 0
        self.wid_present = False
        self.prec_present = False
        self.minus = False
        self.plus = False
        self.sharp = False
        self.space = False
        self.zero = False
        self.plus_v = False
        self.sharp_v = False

    def write(self, s: str) -> None:
        self.buf.append(s)

    # --- format.go --------------------------------------------------------------

    def write_padding(self, n: int) -> None:
        if n <= 0:
            return
        self.write(("0" if self.zero and not self.minus else " ") * n)

    def pad(self, s: str) -> None:
        if not self.wid_present or self.wid == 0:
            self.write(s)
            return
        width = self.wid - len(s)
        if not self.minus:
            self.write_padding(width)
            self.write(s)
        else:
            self.write(s)
            self.write_padding(width)

    def fmt_boolean(self, v: bool) -> None:
        self.pad("true" if v else "false")

    def fmt_unicode(self, u: int) -> None:
        prec = 4
        if self.prec_present and self.prec > 4:
            prec = self.prec
        hexd = f"{u:X}".rjust(prec, "0")
        s = "U+" + hexd
        if self.sharp and u <= 0x10FFFF and not 0xD800 <= u < 0xE000 and is_print(chr(u)):
            s += " '" + chr(u) + "'"
        old_zero = self.zero
        self.zero = False
        self.pad(s)
        self.zero = old_zero

    def fmt_integer(self, u: int, base: int, signed: bool, verb: str, digits: str) -> None:
        if signed:
            u = u - (1 << 64) if u >= 1 << 63 else u
        negative = signed and u < 0
        if negative:
            u = -u
        prec = 0
        if self.prec_present:
            prec = self.prec
            if prec == 0 and u == 0:
                old_zero = self.zero
                self.zero = False
                self.write_padding(self.wid)
                self.zero = old_zero
                return
        elif self.zero and not self.minus and self.wid_present:
            prec = self.wid
            if negative or self.plus or self.space:
                prec -= 1
        if base == 10:
            body = str(u)
        else:
            body = ""
            while True:
                body = digits[u % base] + body
                u //= base
                if u == 0:
                    break
        if len(body) < prec:
            body = "0" * (prec - len(body)) + body
        if self.sharp:
            if base == 2:
                body = "0b" + body
            elif base == 8:
                if body[0] != "0":
                    body = "0" + body
            elif base == 16:
                body = "0" + digits[16] + body
        if verb == "O":
            body = "0o" + body
        if negative:
            body = "-" + body
        elif self.plus:
            body = "+" + body
        elif self.space:
            body = " " + body
        old_zero = self.zero
        self.zero = False
        self.pad(body)
        self.zero = old_zero

    def truncate(self, s: str) -> str:
        if self.prec_present:
            return s[: self.prec]
        return s

    def fmt_s(self, s: str) -> None:
        self.pad(self.truncate(s))

    def fmt_sbx(self, b: bytes, digits: str) -> None:
        length = len(b)
        if self.prec_present and self.prec < length:
            length = self.prec
        width = 2 * length
        if width > 0:
            if self.space:
                if self.sharp:
                    width *= 2
                width += length - 1
            elif self.sharp:
                width += 2
        else:
            if self.wid_present:
                self.write_padding(self.wid)
            return
        if self.wid_present and self.wid > width and not self.minus:
            self.write_padding(self.wid - width)
        out = []
        if self.sharp:
            out.append("0" + digits[16])
        for i in range(length):
            if self.space and i > 0:
                out.append(" ")
                if self.sharp:
                    out.append("0" + digits[16])
            c = b[i]
            out.append(digits[c >> 4] + digits[c & 0xF])
        self.write("".join(out))
        if self.wid_present and self.wid > width and self.minus:
            self.write_padding(self.wid - width)

    def fmt_q(self, s: str) -> None:
        s = self.truncate(s)
        if self.sharp and can_backquote(s):
            self.pad("`" + s + "`")
            return
        self.pad(quote_to_ascii(s) if self.plus else quote(s))

    def fmt_c(self, c: int) -> None:
        if c > 0x10FFFF or 0xD800 <= c < 0xE000:
            c = 0xFFFD
        self.pad(chr(c))

    def fmt_qc(self, c: int) -> None:
        self.pad(quote_rune_to_ascii(c) if self.plus else quote_rune(c))

    def fmt_float_str(self, v: float, verb: str, prec: int) -> None:
        if self.prec_present:
            prec = self.prec
        num = format_float(v, verb, prec)
        if num[0] in "-+":
            pass
        else:
            num = "+" + num
        if self.space and num[0] == "+" and not self.plus:
            num = " " + num[1:]
        if num[1] in "IN":
            old_zero = self.zero
            self.zero = False
            if num[1] == "N" and not self.space and not self.plus:
                num = num[1:]
            self.pad(num)
            self.zero = old_zero
            return
        if self.sharp and verb != "b":
            num = self._sharp_float(num, verb, prec)
        if self.plus or num[0] != "+":
            if self.zero and not self.minus and self.wid_present and self.wid > len(num):
                self.write(num[0])
                self.write_padding(self.wid - len(num))
                self.write(num[1:])
                return
            self.pad(num)
            return
        self.pad(num[1:])

    @staticmethod
    def _sharp_float(num: str, verb: str, prec: int) -> str:
        digits = 0
        if verb in "vgGx":
            digits = 6 if prec == -1 else prec
        tail = ""
        has_point = False
        saw_nonzero = False
        body = num
        i = 1
        while i < len(body):
            c = body[i]
            if c == ".":
                has_point = True
            elif c in "pP" or (c in "eE" and verb not in "xX"):
                tail = body[i:]
                body = body[:i]
                break
            else:
                if c != "0":
                    saw_nonzero = True
                if saw_nonzero:
                    digits -= 1
            i += 1
        if not has_point:
            if len(body) == 2 and body[1] == "0":
                digits -= 1
            body += "."
        if digits > 0:
            body += "0" * digits
        return body + tail

    # --- print.go ---------------------------------------------------------------

    def bad_verb(self, value: Any, verb: str) -> None:
        self.erroring = True
        self.write("%!" + verb + "(")
        if value is None or value is INVALID:
            self.write("<nil>")
        else:
            self.write(type_of(value).name + "=")
            self.print_value(value, "v", 0)
        self.write(")")
        self.erroring = False

    def fmt_bool(self, value: Any, v: bool, verb: str) -> None:
        if verb in "tv":
            self.fmt_boolean(v)
        else:
            self.bad_verb(value, verb)

    def fmt_int(self, value: Any, v: int, signed: bool, verb: str) -> None:
        u = v & ((1 << 64) - 1)
        if verb == "v":
            if self.sharp_v and not signed:
                sharp = self.sharp
                self.sharp = True
                self.fmt_integer(u, 16, False, "v", _LOWER)
                self.sharp = sharp
            else:
                self.fmt_integer(u, 10, signed, verb, _LOWER)
        elif verb == "d":
            self.fmt_integer(u, 10, signed, verb, _LOWER)
        elif verb == "b":
            self.fmt_integer(u, 2, signed, verb, _LOWER)
        elif verb in "oO":
            self.fmt_integer(u, 8, signed, verb, _LOWER)
        elif verb == "x":
            self.fmt_integer(u, 16, signed, verb, _LOWER)
        elif verb == "X":
            self.fmt_integer(u, 16, signed, verb, _UPPER)
        elif verb == "c":
            self.fmt_c(u)
        elif verb == "q":
            self.fmt_qc(u)
        elif verb == "U":
            self.fmt_unicode(u)
        else:
            self.bad_verb(value, verb)

    def fmt_float(self, value: Any, v: float, verb: str) -> None:
        if verb == "v":
            self.fmt_float_str(v, "g", -1)
        elif verb in "bgGxX":
            self.fmt_float_str(v, verb, -1)
        elif verb in "feE":
            self.fmt_float_str(v, verb, 6)
        elif verb == "F":
            self.fmt_float_str(v, "f", 6)
        else:
            self.bad_verb(value, verb)

    def fmt_complex(self, value: Any, v: complex, verb: str) -> None:
        if verb in "vbgGxXfFeE":
            old_plus = self.plus
            self.write("(")
            self.fmt_float(value, v.real, verb)
            self.plus = True
            self.fmt_float(value, v.imag, verb)
            self.write("i)")
            self.plus = old_plus
        else:
            self.bad_verb(value, verb)

    def fmt_string(self, value: Any, v: str, verb: str) -> None:
        if verb == "v":
            if self.sharp_v:
                self.fmt_q(v)
            else:
                self.fmt_s(v)
        elif verb == "s":
            self.fmt_s(v)
        elif verb == "x":
            self.fmt_sbx(go_bytes(v), _LOWER)
        elif verb == "X":
            self.fmt_sbx(go_bytes(v), _UPPER)
        elif verb == "q":
            self.fmt_q(v)
        else:
            self.bad_verb(value, verb)

    def fmt_bytes(self, v: bytes, verb: str, type_name: str, nil: bool = False) -> None:
        if verb in "vd":
            if self.sharp_v:
                self.write(type_name)
                if nil:
                    self.write("(nil)")
                    return
                self.write("{")
                for i, c in enumerate(v):
                    if i > 0:
                        self.write(", ")
                    sharp = self.sharp
                    self.sharp = True
                    self.fmt_integer(c, 16, False, "v", _LOWER)
                    self.sharp = sharp
                self.write("}")
            else:
                self.write("[")
                for i, c in enumerate(v):
                    if i > 0:
                        self.write(" ")
                    self.fmt_integer(c, 10, False, verb, _LOWER)
                self.write("]")
        elif verb == "s":
            self.pad(_from_bytes(v[: self.prec] if self.prec_present else v))
        elif verb == "x":
            self.fmt_sbx(v, _LOWER)
        elif verb == "X":
            self.fmt_sbx(v, _UPPER)
        elif verb == "q":
            self.fmt_q(_from_bytes(v))
        else:
            self.print_value(v, verb, 0)

    def fmt_pointer(self, value: Any, verb: str) -> None:
        if isinstance(value, Ptr):
            u = 0 if value.target is None else id(value.target)
        elif kind_of(value) in (Kind.FUNC, Kind.MAP, Kind.SLICE, Kind.PTR):
            u = id(value)
        else:
            self.bad_verb(value, verb)
            return
        if verb == "v":
            if self.sharp_v:
                self.write("(" + type_of(value).name + ")(")
                if u == 0:
                    self.write("nil")
                else:
                    self._fmt_0x64(u, True)
                self.write(")")
            elif u == 0:
                self.pad("<nil>")
            else:
                self._fmt_0x64(u, not self.sharp)
        elif verb == "p":
            self._fmt_0x64(u, not self.sharp)
        elif verb in "bodxX":
            self.fmt_int(value, u, False, verb)
        else:
            self.bad_verb(value, verb)

    def _fmt_0x64(self, u: int, leading0x: bool) -> None:
        sharp = self.sharp
        self.sharp = leading0x
        self.fmt_integer(u, 16, False, "v", _LOWER)
        self.sharp = sharp

    def handle_methods(self, arg: Any, verb: str) -> bool:
        if self.erroring or self.sharp_v or verb not in "vsxXq":
            return False
        method = find_method(arg, "String")
        if method is None:
            return False
        self.fmt_string(arg, str(method()), verb)
        return True

    def print_arg(self, arg: Any, verb: str) -> None:
        """``pp.printArg``: ``arg`` is what an ``any`` parameter received (None is nil)."""
        if isinstance(arg, Iface):
            arg = arg.value
        if arg is None or arg is INVALID:
            if verb in "Tv":
                self.pad("<nil>")
            else:
                self.bad_verb(None, verb)
            return
        if verb == "T":
            self.fmt_s(type_of(arg).name)
            return
        if verb == "p":
            self.fmt_pointer(arg, "p")
            return
        basic = type(arg)
        if basic is bool:
            self.fmt_bool(arg, arg, verb)
        elif basic is float:
            self.fmt_float(arg, arg, verb)
        elif basic is complex:
            self.fmt_complex(arg, arg, verb)
        elif basic is int:
            self.fmt_int(arg, arg, True, verb)
        elif basic is str:
            self.fmt_string(arg, arg, verb)
        elif basic in (bytes, bytearray):
            self.fmt_bytes(bytes(arg), verb, "[]byte")
        elif not self.handle_methods(arg, verb):
            self.print_value(arg, verb, 0)

    def print_value(self, value: Any, verb: str, depth: int) -> None:
        """``pp.printValue``."""
        if depth > 0 and value is not INVALID and not isinstance(value, Iface) and self.handle_methods(value, verb):
            return
        kind = kind_of(value)
        if kind == Kind.INVALID:
            if depth == 0:
                self.write("<invalid reflect.Value>")
            elif verb == "v":
                self.write("<nil>")
            else:
                self.bad_verb(None, verb)
        elif kind == Kind.BOOL:
            self.fmt_bool(value, value, verb)
        elif kind == Kind.INT:
            self.fmt_int(value, int(value), True, verb)
        elif kind == Kind.UINT:
            self.fmt_int(value, int(value), False, verb)
        elif kind == Kind.FLOAT:
            self.fmt_float(value, float(value), verb)
        elif kind == Kind.COMPLEX:
            self.fmt_complex(value, complex(value), verb)
        elif kind == Kind.STRING:
            self.fmt_string(value, str(value), verb)
        elif kind == Kind.MAP:
            self._print_map(value, verb, depth)
        elif kind == Kind.STRUCT:
            self._print_struct(value, verb, depth)
        elif kind == Kind.INTERFACE:
            inner = value.value
            if inner is None:
                if self.sharp_v:
                    self.write(type_of(value).name + "(nil)")
                else:
                    self.write("<nil>")
            else:
                self.print_value(inner, verb, depth + 1)
        elif kind == Kind.SLICE:
            self._print_slice(value, verb, depth)
        elif kind == Kind.PTR:
            target = value.target if isinstance(value, Ptr) else None
            if depth == 0 and target is not None and kind_of(target) in (Kind.SLICE, Kind.STRUCT, Kind.MAP):
                self.write("&")
                self.print_value(target, verb, depth + 1)
                return
            self.fmt_pointer(value, verb)
        else:
            self.fmt_pointer(value, verb)

    def _print_map(self, value: Any, verb: str, depth: int) -> None:
        if self.sharp_v:
            self.write(type_of(value).name)
            if getattr(value, "nil", False):
                self.write("(nil)")
                return
            self.write("{")
        else:
            self.write("map[")
        for i, (k, v) in enumerate(map_items(value)):
            if i > 0:
                self.write(", " if self.sharp_v else " ")
            self.print_value(k, verb, depth + 1)
            self.write(":")
            self.print_value(v, verb, depth + 1)
        self.write("}" if self.sharp_v else "]")

    def _print_struct(self, value: Any, verb: str, depth: int) -> None:
        if self.sharp_v:
            self.write(type_of(value).name)
        self.write("{")
        for i, (name, declared) in enumerate(struct_fields(value)):
            if i > 0:
                self.write(", " if self.sharp_v else " ")
            if self.plus_v or self.sharp_v:
                self.write(name + ":")
            field = as_value(getattr(value, name), declared)
            if isinstance(field, Iface) and field.value is not None:
                field = field.value
            self.print_value(field, verb, depth + 1)
        self.write("}")

    def _print_slice(self, value: Any, verb: str, depth: int) -> None:
        t = type_of(value)
        assert t.elem is not None
        if verb in "sqxX" and t.elem.kind == Kind.UINT:
            self.fmt_bytes(bytes(value), verb, t.name)
            return
        items = elements(value)
        if self.sharp_v:
            self.write(t.name)
            if getattr(value, "nil", False):
                self.write("(nil)")
                return
            self.write("{")
            for i, item in enumerate(items):
                if i > 0:
                    self.write(", ")
                self.print_value(item, verb, depth + 1)
            self.write("}")
        else:
            self.write("[")
            for i, item in enumerate(items):
                if i > 0:
                    self.write(" ")
                self.print_value(item, verb, depth + 1)
            self.write("]")

    # --- Printf -----------------------------------------------------------------

    def do_printf(self, fmt: str, args: list[Any]) -> None:
        end = len(fmt)
        arg_num = 0
        after_index = False
        self.reordered = False
        i = 0
        while i < end:
            self.good_arg_num = True
            last = i
            while i < end and fmt[i] != "%":
                i += 1
            if i > last:
                self.write(fmt[last:i])
            if i >= end:
                break
            i += 1
            self.clear_flags()
            simple_done = False
            while i < end:
                c = fmt[i]
                if c == "#":
                    self.sharp = True
                elif c == "0":
                    self.zero = True
                elif c == "+":
                    self.plus = True
                elif c == "-":
                    self.minus = True
                elif c == " ":
                    self.space = True
                else:
                    if "a" <= c <= "z" and arg_num < len(args):
                        if c in "vw":
                            self.sharp_v = self.sharp
                            self.sharp = False
                            self.plus_v = self.plus
                            self.plus = False
                        if c == "w":
                            self.bad_verb(_arg(args[arg_num]), c)
                        else:
                            self.print_arg(args[arg_num], c)
                        arg_num += 1
                        i += 1
                        simple_done = True
                    break
                i += 1
            if simple_done:
                continue

            arg_num, i, after_index = self.arg_number(arg_num, fmt, i, len(args))
            if i < end and fmt[i] == "*":
                i += 1
                self.wid, self.wid_present, arg_num = _int_from_arg(args, arg_num)
                if not self.wid_present:
                    self.write("%!(BADWIDTH)")
                if self.wid < 0:
                    self.wid = -self.wid
                    self.minus = True
                    self.zero = False
                after_index = False
            else:
                self.wid, self.wid_present, i = _parsenum(fmt, i, end)
                if after_index and self.wid_present:
                    self.good_arg_num = False

            if i + 1 < end and fmt[i] == ".":
                i += 1
                if after_index:
                    self.good_arg_num = False
                arg_num, i, after_index = self.arg_number(arg_num, fmt, i, len(args))
                if i < end and fmt[i] == "*":
                    i += 1
                    self.prec, self.prec_present, arg_num = _int_from_arg(args, arg_num)
                    if self.prec < 0:
                        self.prec = 0
                        self.prec_present = False
                    if not self.prec_present:
                        self.write("%!(BADPREC)")
                    after_index = False
                else:
                    self.prec, self.prec_present, i = _parsenum(fmt, i, end)
                    if not self.prec_present:
                        self.prec = 0
                        self.prec_present = True

            if not after_index:
                arg_num, i, after_index = self.arg_number(arg_num, fmt, i, len(args))

            if i >= end:
                self.write("%!(NOVERB)")
                break
            verb = fmt[i]
            i += 1
            if verb == "%":
                self.write("%")
            elif not self.good_arg_num:
                self.write("%!" + verb + "(BADINDEX)")
            elif arg_num >= len(args):
                self.write("%!" + verb + "(MISSING)")
            else:
                if verb in "vw":
                    self.sharp_v = self.sharp
                    self.sharp = False
                    self.plus_v = self.plus
                    self.plus = False
                if verb == "w":
                    self.bad_verb(_arg(args[arg_num]), verb)
                else:
                    self.print_arg(args[arg_num], verb)
                arg_num += 1

        if not self.reordered and arg_num < len(args):
            self.clear_flags()
            self.write("%!(EXTRA ")
            for n, arg in enumerate(args[arg_num:]):
                if n > 0:
                    self.write(", ")
                arg = _arg(arg)
                if arg is None:
                    self.write("<nil>")
                else:
                    self.write(type_of(arg).name + "=")
                    self.print_arg(arg, "v")
            self.write(")")

    def arg_number(self, arg_num: int, fmt: str, i: int, num_args: int) -> tuple[int, int, bool]:
        if len(fmt) <= i or fmt[i] != "[":
            return arg_num, i, False
        self.reordered = True
        index, wid, ok = _parse_arg_number(fmt[i:])
        if ok and 0 <= index < num_args:
            return index, i + wid, True
        self.good_arg_num = False
        return arg_num, i + wid, ok


def _arg(a: Any) -> Any:
    return a.value if isinstance(a, Iface) else (None if a is INVALID else a)


def _too_large(x: int) -> bool:
    return x > 1_000_000 or x < -1_000_000


def _parsenum(s: str, start: int, end: int) -> tuple[int, bool, int]:
    if start >= end:
        return 0, False, end
    num = 0
    isnum = False
    i = start
    while i < end and "0" <= s[i] <= "9":
        if _too_large(num):
            return 0, False, end
        num = num * 10 + ord(s[i]) - 48
        isnum = True
        i += 1
    return num, isnum, i


def _parse_arg_number(fmt: str) -> tuple[int, int, bool]:
    if len(fmt) < 3:
        return 0, 1, False
    for i in range(1, len(fmt)):
        if fmt[i] == "]":
            width, ok, newi = _parsenum(fmt, 1, i)
            if not ok or newi != i:
                return 0, i + 1, False
            return width - 1, i + 1, True
    return 0, 1, False


def _int_from_arg(args: list[Any], arg_num: int) -> tuple[int, bool, int]:
    num, is_int, new = 0, False, arg_num
    if arg_num < len(args):
        a = _arg(args[arg_num])
        if isinstance(a, int) and not isinstance(a, bool):
            num, is_int = int(a), True
        new = arg_num + 1
        if _too_large(num):
            num, is_int = 0, False
    return num, is_int, new


def sprint(args: list[Any]) -> str:
    """``fmt.Sprint``: spaces between operands when neither side is a string."""
    p = _Printer()
    prev_string = False
    for n, arg in enumerate(args):
        arg = _arg(arg)
        is_string = arg is not None and kind_of(arg) == Kind.STRING
        if n > 0 and not is_string and not prev_string:
            p.write(" ")
        p.print_arg(arg, "v")
        prev_string = is_string
    return go_string("".join(p.buf))


def sprintln(args: list[Any]) -> str:
    """``fmt.Sprintln``: operands separated by spaces, then a newline."""
    p = _Printer()
    for n, arg in enumerate(args):
        if n > 0:
            p.write(" ")
        p.print_arg(_arg(arg), "v")
    p.write("\n")
    return go_string("".join(p.buf))


def sprintf(fmt: str, args: list[Any]) -> str:
    """``fmt.Sprintf``."""
    p = _Printer()
    p.do_printf(fmt, args)
    return go_string("".join(p.buf))

