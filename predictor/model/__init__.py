"""The model: the kserve `Model` subclass and what it is made of.

`housing` (HousingModel: load, preprocess, predict, postprocess), `compiled` (the trees
compiled to flat tables), `artifact` (the model directory and its version), `explain`
(TreeSHAP), `drift` (the feature histogram), `versions` (the served version), `wait`
(waiting for a model directory to appear).
"""
