"""Helpers shared by config files: parsing the ``:arg`` string of ``--config=configs/x.py:arg``.

The arg is a comma-separated list of ``key=value`` (or bare ``key`` for True); lists use ``+``
(``encoders=smollm2_135m+gemma3_270m``). Every key must be declared with a default, so a typo
fails with a message naming the accepted keys instead of being ignored.
"""
import ml_collections


def _convert(key, text, default):
    if isinstance(default, bool):
        if text.lower() in ("1", "true", "yes", ""):
            return True
        if text.lower() in ("0", "false", "no"):
            return False
        raise ValueError(f"config arg {key}={text!r}: expected a boolean (true/false)")
    if isinstance(default, int):
        return int(text)
    if isinstance(default, float):
        return float(text)
    if isinstance(default, (tuple, list)):
        return tuple(t for t in text.split("+") if t)
    return text


def parse_arg(arg: str | None, **defaults) -> ml_collections.ConfigDict:
    """Parses ``"a=1,b,c=x+y"`` against typed ``defaults``; raises ValueError on unknown keys."""
    parsed = dict(defaults)
    for item in (arg or "").split(","):
        item = item.strip()
        if not item:
            continue
        key, _, value = item.partition("=")
        key = key.strip()
        if key not in defaults:
            raise ValueError(
                f"unknown config arg {key!r}; accepted: {', '.join(sorted(defaults))}")
        try:
            parsed[key] = _convert(key, value.strip() if "=" in item else "true", defaults[key])
        except ValueError as e:
            raise ValueError(f"config arg {key}={value!r}: {e}") from None
    return ml_collections.ConfigDict(parsed)
