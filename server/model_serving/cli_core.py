"""Core verbs: inspect, export, quantize, serve, register, status, deploy."""

from __future__ import annotations

import click


def register(group: click.Group) -> None:
    pass
