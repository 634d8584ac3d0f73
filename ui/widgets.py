"""Widgets drawn from a settings model (the Distill page's method parameters)."""

from __future__ import annotations

from typing import Any

import streamlit as st
from pydantic import BaseModel

from lelp_studio.params import float_step, param_fields, range_help


def param_widgets(model: type[BaseModel], prefix: str, *, columns: int = 3) -> dict[str, Any]:
    """Draw one widget per field of ``model`` (keys ``{prefix}{field}``, initialised with
    ``setdefault`` to the field's default) and return ``{field: value}`` ready for
    ``model(**values)``."""
    ss = st.session_state
    fields = param_fields(model)
    cols = st.columns(columns)
    values: dict[str, Any] = {}
    for i, p in enumerate(fields):
        key = f"{prefix}{p.name}"
        ss.setdefault(key, p.default)
        with cols[i % columns]:
            if p.kind == "choice":
                values[p.name] = st.selectbox(p.name, list(p.options), key=key, help=p.help)
            elif p.kind == "bool":
                values[p.name] = st.checkbox(p.name, key=key, help=p.help)
            elif p.kind == "int":
                v = st.number_input(
                    p.name,
                    min_value=None if p.low is None else int(p.low),
                    max_value=None if p.high is None else int(p.high),
                    step=1,
                    key=key,
                    help=range_help(p),
                    placeholder="auto" if p.optional else None,
                )
                values[p.name] = None if v is None else int(v)
            else:
                v = st.number_input(
                    p.name,
                    min_value=None if p.low is None else float(p.low),
                    max_value=None if p.high is None else float(p.high),
                    step=float_step(p.default),
                    format="%g",
                    key=key,
                    help=range_help(p),
                    placeholder="auto" if p.optional else None,
                )
                values[p.name] = None if v is None else float(v)
    return values
