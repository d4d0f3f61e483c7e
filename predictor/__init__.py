"""housing-predictor: a KServe custom predictor for California house prices."""
