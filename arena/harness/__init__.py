"""What runs and judges a manager: invariant checks (``check``), driving requests (``run``), traces (``trace``)
and the hunt (``hunt``)."""
