"""Operations commands that run from the closeloop image (``python -m deploy.tools.<name>``)."""
