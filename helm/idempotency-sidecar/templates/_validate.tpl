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
{{- $sentinel := $redis.sentinel -}}
{{- if not (has $redis.mode (list "standalone" "cluster" "sentinel" "none")) -}}
{{- $m = append $m (printf "redis.mode: %q is not supported; use standalone, cluster, sentinel or none" (toString $redis.mode)) -}}
{{- end -}}
{{- if eq $redis.mode "standalone" -}}
{{- if and $redis.url $redis.existingSecret -}}
{{- $m = append $m "redis: set redis.existingSecret or redis.url, not both" -}}
{{- else if not (or $redis.url $redis.existingSecret) -}}
{{- $m = append $m "redis: set redis.existingSecret (a Secret holding the redis:// URL) or redis.url (the chart creates the Secret); or redis.mode: cluster or sentinel; or redis.mode: none to try it out with the in-process store, one replica only" -}}
{{- end -}}
{{- if and $redis.url (not (regexMatch "^rediss?://" (toString $redis.url))) -}}
{{- $m = append $m "redis.url: must start with redis:// or rediss://" -}}
{{- end -}}
{{- end -}}
{{- if and $redis.cluster.nodes (ne $redis.mode "cluster") -}}
{{- $m = append $m "redis.cluster.nodes: only used with redis.mode: cluster" -}}
{{- end -}}
{{- if and (or $sentinel.sentinels $sentinel.masterName) (ne $redis.mode "sentinel") -}}
{{- $m = append $m "redis.sentinel: only used with redis.mode: sentinel" -}}
{{- end -}}
{{- if has $redis.mode (list "cluster" "sentinel") -}}
{{- if or $redis.url $redis.existingSecret -}}
{{- $m = append $m (printf "redis: redis.url and redis.existingSecret are for redis.mode standalone; %s" (ternary "a cluster is given by redis.cluster.nodes" "Sentinels are given by redis.sentinel.sentinels and redis.sentinel.masterName" (eq $redis.mode "cluster"))) -}}
{{- end -}}
{{- end -}}
{{- if eq $redis.mode "cluster" -}}
{{- if not $redis.cluster.nodes -}}
{{- $m = append $m "redis.cluster.nodes: redis.mode cluster needs the host:port seeds of the cluster" -}}
{{- end -}}
{{- range $redis.cluster.nodes -}}
{{- if not (regexMatch "^[^\\s:/,]+:[0-9]+$" (toString .)) -}}
{{- $m = append $m (printf "redis.cluster.nodes: %q is not host:port" (toString .)) -}}
{{- end -}}
{{- end -}}
{{- else if eq $redis.mode "sentinel" -}}
{{- if not $sentinel.sentinels -}}
{{- $m = append $m "redis.sentinel.sentinels: redis.mode sentinel needs the host:port of each Sentinel, e.g. [redis-node-0.redis-headless:26379, redis-node-1.redis-headless:26379, redis-node-2.redis-headless:26379]" -}}
{{- end -}}
{{- range $sentinel.sentinels -}}
{{- if not (regexMatch "^[^\\s:/,]+:[0-9]+$" (toString .)) -}}
{{- $m = append $m (printf "redis.sentinel.sentinels: %q is not host:port" (toString .)) -}}
{{- end -}}
{{- end -}}
{{- if not $sentinel.masterName -}}
{{- $m = append $m "redis.sentinel.masterName: redis.mode sentinel needs the name of the master the Sentinels monitor (sentinel monitor <name> ...), e.g. mymaster" -}}
{{- else if not (regexMatch "^[\\x21-\\x7e]{1,128}$" (toString $sentinel.masterName)) -}}
{{- $m = append $m (printf "redis.sentinel.masterName: %q is not a master name; use the name given to sentinel monitor, without spaces" (toString $sentinel.masterName)) -}}
{{- end -}}
{{- else if eq $redis.mode "none" -}}
{{- if or $redis.url $redis.existingSecret -}}
{{- $m = append $m "redis: redis.mode none uses the in-process store; remove redis.url and redis.existingSecret, or choose standalone, cluster or sentinel" -}}
{{- end -}}
{{- if and (eq $v.mode "gateway") (gt (int $v.replicaCount) 1) -}}
{{- $m = append $m (printf "redis.mode: none keeps records in each process: with replicaCount %d a retry that reaches another replica runs again; use a Redis, or replicaCount: 1" (int $v.replicaCount)) -}}
{{- end -}}
{{- if or $v.redlock.urls $v.redlock.existingSecret -}}
{{- $m = append $m "redlock: a lock quorum needs a Redis record store; redis.mode is none" -}}
{{- end -}}
{{- if or $redis.tls.enabled $redis.tls.existingSecret -}}
{{- $m = append $m "redis.tls: redis.mode is none: there is no Redis to speak TLS to; remove redis.tls or choose a Redis" -}}
{{- end -}}
{{- end -}}

{{- /* Redis ACL credentials and TLS */ -}}
{{- $nodes := has $redis.mode (list "cluster" "sentinel") -}}
{{- if and $redis.auth.existingSecret (not $nodes) -}}
{{- $m = append $m "redis.auth.existingSecret: only used with redis.mode cluster or sentinel; a single Redis takes its user and password from its URL (redis://user:password@host:6379)" -}}
{{- end -}}
{{- if and $redis.tls.enabled (not $nodes) (ne $redis.mode "none") -}}
{{- $m = append $m "redis.tls.enabled: only used with redis.mode cluster or sentinel; a single Redis asks for TLS with a rediss:// URL (redis.tls.existingSecret still gives it the CA and client certificate)" -}}
{{- end -}}
{{- with $redis.tls -}}
{{- if and .certKey (not .keyKey) -}}
{{- $m = append $m "redis.tls.certKey: a client certificate needs its key: set redis.tls.keyKey too (tls.key in kubernetes.io/tls and cert-manager Secrets)" -}}
{{- else if and .keyKey (not .certKey) -}}
{{- $m = append $m "redis.tls.keyKey: a key needs its client certificate: set redis.tls.certKey too (tls.crt in kubernetes.io/tls and cert-manager Secrets)" -}}
{{- end -}}
{{- if and (or .certKey .keyKey) (not .existingSecret) -}}
{{- $m = append $m "redis.tls.certKey: names a key of redis.tls.existingSecret, which is not set; name the Secret that holds the client certificate" -}}
{{- end -}}
{{- if and .existingSecret (not .caKey) (not .certKey) (not .keyKey) -}}
{{- $m = append $m "redis.tls.existingSecret: mounts nothing: set redis.tls.caKey (the CA, e.g. ca.crt) and/or redis.tls.certKey and keyKey (the client certificate), or unset it" -}}
{{- end -}}
{{- end -}}
{{- if gt (int $redis.waitReplicas) 0 -}}
{{- if eq $redis.mode "none" -}}
{{- $m = append $m "redis.waitReplicas: the in-process store has no replicas to wait for; set 0, or choose a Redis" -}}
{{- end -}}
{{- with $redis.waitTimeout -}}
{{- $storeTimeout := include "idempotency-sidecar.setting" (dict "Values" $v "key" "storeTimeout" "env" "IDEMPOTENCY_STORE_TIMEOUT" "default" "1s") -}}
{{- $storeMs := include "idempotency-sidecar.durationMillis" $storeTimeout -}}
{{- if and (ne $storeMs "invalid") (ge (int64 (include "idempotency-sidecar.durationMillis" .)) (int64 $storeMs)) -}}
{{- $m = append $m (printf "redis.waitTimeout: %s is not shorter than the store timeout (%s): a WAIT that outlasts it counts the store as down; shorten it, or lengthen config.storeTimeout" (toString .) $storeTimeout) -}}
{{- end -}}
{{- end -}}
{{- else if $redis.waitTimeout -}}
{{- $m = append $m "redis.waitTimeout: only used with redis.waitReplicas above 0" -}}
{{- end -}}

{{- /* HTTPS on the proxy listener, and client-certificate tenants */ -}}
{{- if and $v.tls.clientCaKey (not $v.tls.existingSecret) -}}
{{- $m = append $m "tls.clientCaKey: names a key of tls.existingSecret, which is not set; client certificates need the listener to speak HTTPS: name the Secret with its certificate and key" -}}
{{- end -}}
{{- $tenantFrom := include "idempotency-sidecar.setting" (dict "Values" $v "key" "tenantFrom" "env" "IDEMPOTENCY_TENANT_FROM" "default" "headers") -}}
{{- if and (eq $tenantFrom "client-certificate") (not (and $v.tls.existingSecret $v.tls.clientCaKey)) -}}
{{- $m = append $m "tenantFrom: client-certificate scopes keys by the verified client certificate: set tls.existingSecret (the listener's certificate and key) and tls.clientCaKey (the CA that signs client certificates)" -}}
{{- end -}}
{{- if and $v.tests.enabled $v.tests.replay.enabled $v.tls.clientCaKey -}}
{{- $m = append $m "tests.replay.enabled: the proxy listener requires a client certificate (tls.clientCaKey), which the test Pod does not have; disable the replay test" -}}
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
{{- $fromValues = merge $fromValues (dict "redisSentinels" "redis.sentinel.sentinels" "redisSentinelMaster" "redis.sentinel.masterName" "redisUsername" "redis.auth.existingSecret (a secret, never in a ConfigMap)" "redisPassword" "redis.auth.existingSecret (a secret, never in a ConfigMap)" "redisTls" "redis.tls.enabled" "redisTlsCaFile" "redis.tls.existingSecret and redis.tls.caKey" "redisTlsCertFile" "redis.tls.existingSecret and redis.tls.certKey" "redisTlsKeyFile" "redis.tls.existingSecret and redis.tls.keyKey" "redisWaitReplicas" "redis.waitReplicas" "redisWaitTimeout" "redis.waitTimeout") -}}
{{- $fromValues = merge $fromValues (dict "tlsCertFile" "tls.existingSecret" "tlsKeyFile" "tls.existingSecret" "tlsClientCaFile" "tls.existingSecret and tls.clientCaKey" "encryptionKeys" "encryption.existingSecret (a secret, never in a ConfigMap)" "encryptionKeysFile" "encryption.existingSecret") -}}
{{- range $key := keys $v.config | sortAlpha -}}
{{- if hasKey $fromValues $key -}}
{{- $m = append $m (printf "config.%s: set by the chart; use %s instead" $key (get $fromValues $key)) -}}
{{- end -}}
{{- end -}}
{{- if and (eq $v.mode "webhook") $v.config -}}
{{- $m = append $m "config: in webhook mode each injected sidecar reads its file from a ConfigMap in its own namespace, named by the pod's idempotency-sidecar.io/config-map annotation (a release of this chart with mode: sidecar in that namespace makes one from config); settings every injected sidecar shares go in extraEnv as IDEMPOTENCY_* variables, which win over that file" -}}
{{- end -}}
{{- $managed := list "IDEMPOTENCY_UPSTREAM" "IDEMPOTENCY_PORT" "IDEMPOTENCY_ADMIN_PORT" "IDEMPOTENCY_REDIS_URL" "IDEMPOTENCY_REDIS_CLUSTER_NODES" "IDEMPOTENCY_REDLOCK_URLS" "IDEMPOTENCY_ADMIN_TOKEN" "IDEMPOTENCY_CONFIG" -}}
{{- $managed = concat $managed (list "IDEMPOTENCY_REDIS_SENTINELS" "IDEMPOTENCY_REDIS_SENTINEL_MASTER" "IDEMPOTENCY_REDIS_USERNAME" "IDEMPOTENCY_REDIS_PASSWORD" "IDEMPOTENCY_REDIS_TLS" "IDEMPOTENCY_REDIS_TLS_CA_FILE" "IDEMPOTENCY_REDIS_TLS_CERT_FILE" "IDEMPOTENCY_REDIS_TLS_KEY_FILE" "IDEMPOTENCY_REDIS_WAIT_REPLICAS" "IDEMPOTENCY_REDIS_WAIT_TIMEOUT") -}}
{{- $managed = concat $managed (list "IDEMPOTENCY_TLS_CERT_FILE" "IDEMPOTENCY_TLS_KEY_FILE" "IDEMPOTENCY_TLS_CLIENT_CA_FILE" "IDEMPOTENCY_ENCRYPTION_KEYS" "IDEMPOTENCY_ENCRYPTION_KEYS_FILE") -}}
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
