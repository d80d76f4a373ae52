#!/usr/bin/env bash
# Roll every Deployment back to its previous ReplicaSet (image and pod spec). KEDA objects
# and ConfigMaps are re-applied from the last successful run's `rendered-<env>` artifact
# by re-running that run's deploy job if the failure was in their settings.
set -uo pipefail
ns="${1:?namespace}"
status=0
for deploy in qscore-worker qscore-functions qscore-triton; do
  kubectl -n "$ns" rollout undo "deployment/$deploy" || status=1
done
for deploy in qscore-worker qscore-functions qscore-triton; do
  kubectl -n "$ns" rollout status "deployment/$deploy" --timeout=600s || status=1
done
exit "$status"
