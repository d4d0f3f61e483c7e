// gRPC ModelInfer load for `make bench-cpu` (perf/grpc_load.py): one row per call, typed
// FP64 contents; with UNIQUE=1 each call's Population is a number no other call uses
// (BASE + VU * 1e7 + iteration), so every call is a cache miss.
import grpc from 'k6/net/grpc';
import { check } from 'k6';

const client = new grpc.Client();
const ROW = JSON.parse(__ENV.ROW);
const BASE = Number(__ENV.BASE || '0');
const UNIQUE = __ENV.UNIQUE === '1';
const POPULATION = 4;

export default function () {
  if (__ITER === 0) client.connect(__ENV.TARGET, { plaintext: true, reflect: true });
  const row = ROW.slice();
  if (UNIQUE) row[POPULATION] = BASE + __VU * 1e7 + __ITER;
  const response = client.invoke('inference.GRPCInferenceService/ModelInfer', {
    model_name: 'housing',
    inputs: [{ name: 'input-0', datatype: 'FP64', shape: [1, 8], contents: { fp64_contents: row } }],
  });
  check(response, { ok: (r) => r && r.status === grpc.StatusOK });
}
