"""Autoscaling planner: Knative's autoscaler simulated over this server's measured capacity.

    python -m planner measure   --model_dir DIR --out capacity.json
    python -m planner simulate  --isvc FILE --capacity FILE --profile P --out DIR
    python -m planner recommend --isvc FILE --capacity FILE --profile P --slo-p99-ms N

`knative` ports the decision code of knative/serving, `isvc` reads an InferenceService,
`capacity` holds the measured service times, `sim` is the discrete-event simulation.
"""
