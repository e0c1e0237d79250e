"""``resnet-edge search``: the most accurate member of the paper's family under a latency budget measured on the
user's own device (host side). :mod:`.space` is the family as a search space, :mod:`.latency` the measurements and
the latency model, :mod:`.study` the search itself (Optuna, ask/tell, successive halving over epochs)."""
