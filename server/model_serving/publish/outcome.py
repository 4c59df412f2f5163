"""What a publish plans and reports."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class PublishedFile(BaseModel):
    path_in_repo: str
    local_path: str = Field(description="Empty for files generated here (the card, the Ollama side files)")
    size_bytes: int
    sha256: str
    action: Literal["add", "change", "same", "unknown"] = Field(description="Against the repo as it is now; unknown: a plan the Hub did not answer")


class PublishResult(BaseModel):
    repo: str
    revision: str
    planned_only: bool = False
    remote_checked: bool = Field(default=True, description="False: a plan made without the Hub; the warnings say what went unchecked")
    files: list[PublishedFile]
    card: str = Field(description="The README.md model card, as uploaded")
    warnings: list[str] = []
    commit_url: str | None = None
    commit_oid: str | None = None
    verified: list[str] = Field(default=[], description="Checks passed after the push")
    uploaded: list[str] = Field(default=[], description="Files this run sent")

    @property
    def summary(self) -> str:
        changed = [f.path_in_repo for f in self.files if f.action != "same"]
        if self.planned_only and not self.remote_checked:
            return f"Plan for {self.repo}@{self.revision}: {len(self.files)} file(s); the Hub was not checked (see warnings); nothing uploaded."
        if self.planned_only:
            return f"Plan for {self.repo}@{self.revision}: {len(self.files)} file(s), {len(changed)} to send; nothing uploaded."
        return f"Published {self.repo}@{self.revision}: {len(self.uploaded)} sent, {len(self.verified)} checks passed; {self.commit_url}"
