{{/*
Checks of how values fit together, beyond what values.schema.json can say. Every problem is
collected and the chart fails once, listing them all (bitnami's validateValues). Every template
that renders objects (and NOTES.txt) includes it first: Helm stops at the first template that
fails, in an order of its own, so this way the first failure is always the whole list.
*/}}

{{/* The message of a missing upstream, shared with the `required` in the gateway Deployment. */}}
{{- define "idempotency-sidecar.upstreamRequired" -}}
upstream: required in gateway mode: the base URL of the existing Service to protect, e.g. --set upstream=http://payments.payments.svc:8080 (as a dependency for the named template, set mode: sidecar)
{{- end -}}

{{- define "idempotency-sidecar.validateValues" -}}
{{- $v := .Values -}}
{{- $m := list -}}

{{- /* mode */ -}}
{{- if not (has $v.mode (list "gateway" "webhook" "sidecar")) -}}
{{- $m = append $m (printf "mode: %q is not a mode; use gateway, webhook or sidecar" (toString $v.mode)) -}}
{{- end -}}

{{- /* upstream */ -}}
{{- if eq $v.mode "gateway" -}}
{{- if not $v.upstream -}}
{{- $m = append $m (include "idempotency-sidecar.upstreamRequired" .) -}}
{{- else -}}
{{- $upstream := tpl (toString $v.upstream) . -}}
{{- if not (regexMatch "^https?://[^/?#\\s]+/?$" $upstream) -}}
{{- $m = append $m (printf "upstream: %q must be http:// or https://, a host and a port, and no path (the sidecar forwards each request's own path)" $upstream) -}}
{{- end -}}
{{- end -}}
{{- else if $v.upstream -}}
{{- $m = append $m (printf "upstream: only used in gateway mode; in %s mode the sidecar forwards to the app's port in its own pod" $v.mode) -}}
{{- end -}}

{{- /* record store */ -}}
{{- $redis := $v.redis -}}
{{- if eq $redis.mode "standalone" -}}
{{- if and $redis.url $redis.existingSecret -}}
{{- $m = append $m "redis: set redis.existingSecret or redis.url, not both" -}}
{{- else if not (or $redis.url $redis.existingSecret) -}}
{{- $m = append $m "redis: set redis.existingSecret (a Secret holding the redis:// URL) or redis.url (the chart creates the Secret); or redis.mode: cluster; or redis.mode: none to try it out with the in-process store, one replica only" -}}
{{- end -}}
{{- if and $redis.url (not (regexMatch "^rediss?://" (toString $redis.url))) -}}
{{- $m = append $m "redis.url: must start with redis:// or rediss://" -}}
{{- end -}}
{{- if $redis.cluster.nodes -}}
{{- $m = append $m "redis.cluster.nodes: only used with redis.mode: cluster" -}}
{{- end -}}
{{- else if eq $redis.mode "cluster" -}}
{{- if not $redis.cluster.nodes -}}
{{- $m = append $m "redis.cluster.nodes: redis.mode cluster needs the host:port seeds of the cluster" -}}
{{- end -}}
{{- range $redis.cluster.nodes -}}
{{- if not (regexMatch "^[^\\s:/,]+:[0-9]+$" (toString .)) -}}
{{- $m = append $m (printf "redis.cluster.nodes: %q is not host:port" (toString .)) -}}
{{- end -}}
{{- end -}}
{{- if or $redis.url $redis.existingSecret -}}
{{- $m = append $m "redis: redis.url and redis.existingSecret are for redis.mode standalone; a cluster is given by redis.cluster.nodes" -}}
{{- end -}}
{{- else if eq $redis.mode "none" -}}
{{- if or $redis.url $redis.existingSecret $redis.cluster.nodes -}}
{{- $m = append $m "redis: redis.mode none uses the in-process store; remove redis.url, redis.existingSecret and redis.cluster.nodes, or choose standalone or cluster" -}}
{{- end -}}
{{- if and (eq $v.mode "gateway") (gt (int $v.replicaCount) 1) -}}
{{- $m = append $m (printf "redis.mode: none keeps records in each process: with replicaCount %d a retry that reaches another replica runs again; use a Redis, or replicaCount: 1" (int $v.replicaCount)) -}}
{{- end -}}
{{- if or $v.redlock.urls $v.redlock.existingSecret -}}
{{- $m = append $m "redlock: a lock quorum needs a Redis record store; redis.mode is none" -}}
{{- end -}}
{{- else -}}
{{- $m = append $m (printf "redis.mode: %q is not supported; use standalone or cluster (the sidecar has no Sentinel support yet), or none" (toString $redis.mode)) -}}
{{- end -}}
{{- if and $v.redlock.urls $v.redlock.existingSecret -}}
{{- $m = append $m "redlock: set redlock.existingSecret or redlock.urls, not both" -}}
{{- end -}}
{{- range $v.redlock.urls -}}
{{- if not (regexMatch "^rediss?://" (toString .)) -}}
{{- $m = append $m (printf "redlock.urls: %q must start with redis:// or rediss://" (toString .)) -}}
{{- end -}}
{{- end -}}

{{- /* config: settings the chart sets from values are refused there */ -}}
{{- $fromValues := dict "upstream" "upstream" "port" "containerPorts.proxy" "adminPort" "containerPorts.admin" "redisUrl" "redis.existingSecret or redis.url" "redisClusterNodes" "redis.cluster.nodes" "redlockUrls" "redlock.existingSecret or redlock.urls" "adminToken" "adminToken.existingSecret" -}}
{{- range $key := keys $v.config | sortAlpha -}}
{{- if hasKey $fromValues $key -}}
{{- $m = append $m (printf "config.%s: set by the chart; use %s instead" $key (get $fromValues $key)) -}}
{{- end -}}
{{- end -}}
{{- if and (eq $v.mode "webhook") $v.config -}}
{{- $m = append $m "config: in webhook mode each injected sidecar reads its file from a ConfigMap in its own namespace, named by the pod's idempotency-sidecar.io/config-map annotation (a release of this chart with mode: sidecar in that namespace makes one from config); settings every injected sidecar shares go in extraEnv as IDEMPOTENCY_* variables, which win over that file" -}}
{{- end -}}
{{- $managed := list "IDEMPOTENCY_UPSTREAM" "IDEMPOTENCY_PORT" "IDEMPOTENCY_ADMIN_PORT" "IDEMPOTENCY_REDIS_URL" "IDEMPOTENCY_REDIS_CLUSTER_NODES" "IDEMPOTENCY_REDLOCK_URLS" "IDEMPOTENCY_ADMIN_TOKEN" "IDEMPOTENCY_CONFIG" -}}
{{- range $v.extraEnv -}}
{{- if has (toString .name) $managed -}}
{{- $m = append $m (printf "extraEnv: %s is set by the chart from its values" .name) -}}
{{- end -}}
{{- end -}}
{{- if eq (int $v.containerPorts.proxy) (int $v.containerPorts.admin) -}}
{{- $m = append $m "containerPorts: proxy and admin must differ" -}}
{{- end -}}

{{- /* shutdown: Kubernetes must wait longer than the sidecar drains */ -}}
{{- $grace := include "idempotency-sidecar.shutdownGrace" . -}}
{{- $graceMs := include "idempotency-sidecar.durationMillis" $grace -}}
{{- if eq $graceMs "invalid" -}}
{{- $m = append $m (printf "config.shutdownGrace: %q is not a duration; use a number with ms, s, m, h or d, e.g. 25s" $grace) -}}
{{- else if le (mul (int64 $v.terminationGracePeriodSeconds) 1000) (int64 $graceMs) -}}
{{- $m = append $m (printf "terminationGracePeriodSeconds: %s must exceed the sidecar's shutdownGrace (%s), or Kubernetes kills it while in-flight requests drain and their outcome becomes unknown" (include "idempotency-sidecar.scalar" $v.terminationGracePeriodSeconds) $grace) -}}
{{- end -}}

{{- /* availability */ -}}
{{- $pdb := $v.podDisruptionBudget -}}
{{- if $pdb.enabled -}}
{{- if and (not (kindIs "invalid" $pdb.minAvailable)) (ne (toString $pdb.minAvailable) "") (not (kindIs "invalid" $pdb.maxUnavailable)) (ne (toString $pdb.maxUnavailable) "") -}}
{{- $m = append $m "podDisruptionBudget: set minAvailable or maxUnavailable, not both" -}}
{{- end -}}
{{- $replicas := 0 -}}
{{- if eq $v.mode "gateway" -}}{{- $replicas = int $v.replicaCount -}}{{- else if eq $v.mode "webhook" -}}{{- $replicas = int $v.webhook.replicaCount -}}{{- end -}}
{{- if and (gt $replicas 1) (regexMatch "^[0-9]+$" (toString $pdb.minAvailable)) (ge (int $pdb.minAvailable) $replicas) -}}
{{- $m = append $m (printf "podDisruptionBudget.minAvailable: %d of %d replicas blocks every voluntary disruption (node drains); lower it or add replicas" (int $pdb.minAvailable) $replicas) -}}
{{- end -}}
{{- end -}}

{{- /* metrics */ -}}
{{- if and $v.serviceMonitor.enabled (ne $v.mode "gateway") -}}
{{- $m = append $m (printf "serviceMonitor.enabled: the ServiceMonitor scrapes the gateway's admin Service; in %s mode scrape the app pods' idem-admin port (a PodMonitor) instead" $v.mode) -}}
{{- end -}}

{{- /* webhook */ -}}
{{- if eq $v.mode "webhook" -}}
{{- $w := $v.webhook -}}
{{- if and (not $w.namespaceSelector) (not $w.objectSelector) -}}
{{- $m = append $m "webhook: namespaceSelector and objectSelector are both empty: every pod in the cluster, kube-system's included, would wait on this webhook; select namespaces (label them idempotency-sidecar.io/injection=enabled) or pods" -}}
{{- end -}}
{{- if $w.certManager.enabled -}}
{{- with $w.certManager.issuerRef -}}
{{- if not .name -}}
{{- $m = append $m "webhook.certManager.issuerRef: needs a name (or leave issuerRef empty for a self-signed Issuer)" -}}
{{- end -}}
{{- if and .kind (not (has .kind (list "Issuer" "ClusterIssuer"))) (or (not .group) (eq .group "cert-manager.io")) -}}
{{- $m = append $m (printf "webhook.certManager.issuerRef.kind: %q is not Issuer or ClusterIssuer" .kind) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if eq (int $w.port) (int $v.containerPorts.proxy) -}}
{{- $m = append $m "webhook.port: must differ from containerPorts.proxy" -}}
{{- end -}}
{{- end -}}

{{- /* helm test */ -}}
{{- if and $v.tests.enabled $v.tests.replay.enabled (ne $v.mode "gateway") -}}
{{- $m = append $m "tests.replay.enabled: the replay test sends its POSTs through the gateway; only in gateway mode" -}}
{{- end -}}

{{- /* image */ -}}
{{- if not $v.image.repository -}}
{{- $m = append $m "image.repository: required" -}}
{{- end -}}

{{- if $m -}}
{{- fail (printf "\n\nVALUES VALIDATION (%d %s):\n  - %s" (len $m) (ternary "problem" "problems" (eq (len $m) 1)) (join "\n  - " $m)) -}}
{{- end -}}
{{- end -}}
