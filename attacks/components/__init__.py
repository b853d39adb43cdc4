"""The registries an optimisation-based gradient inversion attack is composed of.

Each is a dict name -> component; adding a component is one function or class plus one line
in its registry:

- ``dummies.DUMMIES``: how the unknown input is parametrised (``free``, ``tied``);
- ``objectives.OBJECTIVES``: how the simulated update is compared to the captured one
  (``l2``, ``cosine``), or the dummy's classifier input to the one the update leaks
  (``features``; module ``features``: the rate leak and the victim's classifier input);
- ``regularisers.REGULARISERS``: priors on the dummy, each with a weight (``tv``);
- ``optimisers.OPTIMISERS`` and ``optimisers.SCHEDULES``: how the dummy is fitted
  (``lbfgs``, ``adam``, ``signed-adam``; ``none``, ``ig``);
- ``label_tasks.LABEL_TASKS``: how the unknown label is handled (``soft``, ``idlg``).

An attack (``attacks.config.Recipe``) names one entry of each; ``attacks.gradient_matching``
puts them together.
"""
