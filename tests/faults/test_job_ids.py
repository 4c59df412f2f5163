"""Job handles are accepted back by the tools that take them."""

from __future__ import annotations

import re

from model_serving.jobs import new_job_id
from model_serving.requests import JOB_ID_PATTERN


def test_every_job_id_passes_the_job_id_rule() -> None:
    # url-safe base64 starts with '-' once in 64 ids, which the flag guard refuses: job_status then rejected its own handle
    ids = {new_job_id() for _ in range(20_000)}
    assert len(ids) == 20_000
    assert [i for i in ids if not re.fullmatch(JOB_ID_PATTERN, i)] == []
