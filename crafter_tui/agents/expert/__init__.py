"""The scripted expert's parts: map reading and path finding (``navigation``), wording of its
reasoning (``phrases``) and the goal-by-goal decision making (``planner``)."""
