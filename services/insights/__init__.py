"""insights: the review step, cases turned into reports."""
