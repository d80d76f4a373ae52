#!/usr/bin/env bash
# Post-deploy smoke test for one namespace: every Deployment rolled out, Triton reports its
# models ready, KEDA accepted the ScaledObjects, and the workers' readiness (which means
# "connected to Service Bus and the Triton model is ready") holds for at least one pod.
set -euo pipefail
ns="${1:?namespace}"
for deploy in qscore-triton qscore-worker qscore-functions; do
  kubectl -n "$ns" rollout status "deployment/$deploy" --timeout=600s
done
# Triton at zero replicas (dev, no message queued) has no pod to ask; KEDA wakes it on the
# first message and the workers wait for its readiness.
if [ "$(kubectl -n "$ns" get deploy qscore-triton -o jsonpath='{.spec.replicas}')" != "0" ]; then
  kubectl -n "$ns" exec deploy/qscore-triton -c triton -- \
    curl -sf http://127.0.0.1:8000/v2/health/ready
  for model in digits bench_mlp; do
    kubectl -n "$ns" exec deploy/qscore-triton -c triton -- \
      curl -sf "http://127.0.0.1:8000/v2/models/$model/ready"
  done
fi
for so in qscore-worker qscore-functions qscore-triton; do
  kubectl -n "$ns" wait "scaledobject/$so" --for=condition=Ready --timeout=120s
done
kubectl -n "$ns" wait scaledjob/qscore-worker-long --for=condition=Ready --timeout=120s
# A worker at zero replicas (dev) has no pods to check; KEDA wakes it on the first message.
ready="$(kubectl -n "$ns" get deploy qscore-worker -o jsonpath='{.status.readyReplicas}')"
want="$(kubectl -n "$ns" get deploy qscore-worker -o jsonpath='{.spec.replicas}')"
if [ "${want:-0}" -gt 0 ] && [ "${ready:-0}" -lt 1 ]; then
  echo "smoke: no ready worker pod (readiness = Service Bus connected and model ready)" >&2
  exit 1
fi
echo "smoke: $ns ok"
