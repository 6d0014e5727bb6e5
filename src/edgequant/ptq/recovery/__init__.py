"""Accuracy recovery after plain round-to-nearest PTQ: AdaRound (``adaround``) and per-tensor
activation range search (``range_search``), each switched on by a recipe option."""
