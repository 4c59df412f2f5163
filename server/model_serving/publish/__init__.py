"""Publish a deploy's artifacts to the Hugging Face Hub: plan, model card, upload, verify after the push."""
