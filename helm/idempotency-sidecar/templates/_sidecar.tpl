{{/*
The sidecar container, for other charts to include. This chart's gateway Deployment and the
webhook's sidecar template are rendered from the same definition.

Public templates (documented, with an example, in the chart's README):

  idempotency-sidecar.container   a list item: `- name: idempotency-sidecar ...`, for `containers:`
  idempotency-sidecar.volumes     list items for `volumes:`: the config file (with `config`) and the
                                  Secrets the container mounts (redis.tls, tls, encryption); empty
                                  when there is none. Include it whenever you include the container:
                                  every volumeMount of the container names one of these volumes.
  idempotency-sidecar.checksum    a pod annotation value that changes when the config changes

Each takes a dict:
  Values        this chart's values (as a dependency: `.Values.<alias>`, defaults merged in by Helm)
  Release       the including chart's .Release (names are built from .Release.Name)
  upstreamPort  the app container's port: the sidecar forwards to http://127.0.0.1:<upstreamPort>
  upstream      instead of upstreamPort: a whole base URL
  name          optional container name, default "idempotency-sidecar"
  native        optional, true: include it under initContainers as a native sidecar (Kubernetes
                1.29+; restartPolicy Always): it starts before the app and stops after it

Example, in the app chart's Deployment (Chart.yaml: a dependency on idempotency-sidecar with
`alias: idempotencySidecar`; values: `idempotencySidecar: {mode: sidecar, redis: {...}}`):

  containers:
    - name: app
      ...
    {{- include "idempotency-sidecar.container" (dict "Values" .Values.idempotencySidecar "Release" .Release "upstreamPort" 8080) | nindent 4 }}
  volumes:
    {{- include "idempotency-sidecar.volumes" (dict "Values" .Values.idempotencySidecar "Release" .Release) | nindent 4 }}
*/}}

{{/* The sidecar's version, the default image tag where .Chart is another chart's. Equal to Chart.yaml's appVersion (a test checks). */}}
{{- define "idempotency-sidecar.appVersion" -}}0.1.0{{- end -}}

{{- define "idempotency-sidecar.container" -}}
- {{ include "idempotency-sidecar.containerObject" (merge (dict "forWebhook" false) .) | indent 2 | trim }}
{{- end -}}

{{- define "idempotency-sidecar.volumes" -}}
{{- $volumes := list -}}
{{- if .Values.config -}}
{{- $volumes = append $volumes (dict "name" "idempotency-sidecar-config" "configMap" (dict "name" (include "idempotency-sidecar.configMapName" .))) -}}
{{- end -}}
{{- $volumes = concat $volumes (include "idempotency-sidecar.secretFiles" . | fromYaml).volumes -}}
{{- with $volumes -}}
{{- toYaml . -}}
{{- end -}}
{{- end -}}

{{/*
The files the sidecar reads from Secrets: TLS to Redis, the listener's HTTPS pair (and client CA),
the encryption keys. Each Secret is its own read-only volume, mounted under
/var/run/secrets/idempotency-sidecar/, apart from the config directory (a ConfigMap, never a
secret), with `items` so that only the keys the sidecar reads are mounted, under fixed file names
whatever the Secret calls them. A key missing from its Secret keeps the pod from starting with
an event that names it, rather than a sidecar that starts without it.

Returns YAML: {volumes: [...], mounts: [...], env: [...]}, the three always consistent.
*/}}
{{- define "idempotency-sidecar.secretFiles" -}}
{{- $v := .Values -}}
{{- $root := "/var/run/secrets/idempotency-sidecar" -}}
{{- $volumes := list -}}
{{- $mounts := list -}}
{{- $env := list -}}
{{- $files := list -}}

{{- with $v.redis.tls -}}
{{- if .existingSecret -}}
{{- $dir := printf "%s/redis-tls" $root -}}
{{- $items := list -}}
{{- if .caKey -}}
{{- $items = append $items (dict "key" .caKey "path" "ca.crt") -}}
{{- $env = append $env (dict "name" "IDEMPOTENCY_REDIS_TLS_CA_FILE" "value" (printf "%s/ca.crt" $dir)) -}}
{{- end -}}
{{- if and .certKey .keyKey -}}
{{- $items = concat $items (list (dict "key" .certKey "path" "tls.crt") (dict "key" .keyKey "path" "tls.key")) -}}
{{- $env = append $env (dict "name" "IDEMPOTENCY_REDIS_TLS_CERT_FILE" "value" (printf "%s/tls.crt" $dir)) -}}
{{- $env = append $env (dict "name" "IDEMPOTENCY_REDIS_TLS_KEY_FILE" "value" (printf "%s/tls.key" $dir)) -}}
{{- end -}}
{{- if $items -}}
{{- $files = append $files (dict "name" "idempotency-sidecar-redis-tls" "secret" .existingSecret "items" $items "dir" $dir) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- with $v.tls -}}
{{- if .existingSecret -}}
{{- $dir := printf "%s/tls" $root -}}
{{- $items := list (dict "key" .certKey "path" "tls.crt") (dict "key" .keyKey "path" "tls.key") -}}
{{- $env = append $env (dict "name" "IDEMPOTENCY_TLS_CERT_FILE" "value" (printf "%s/tls.crt" $dir)) -}}
{{- $env = append $env (dict "name" "IDEMPOTENCY_TLS_KEY_FILE" "value" (printf "%s/tls.key" $dir)) -}}
{{- if .clientCaKey -}}
{{- $items = append $items (dict "key" .clientCaKey "path" "client-ca.crt") -}}
{{- $env = append $env (dict "name" "IDEMPOTENCY_TLS_CLIENT_CA_FILE" "value" (printf "%s/client-ca.crt" $dir)) -}}
{{- end -}}
{{- $files = append $files (dict "name" "idempotency-sidecar-tls" "secret" .existingSecret "items" $items "dir" $dir) -}}
{{- end -}}
{{- end -}}

{{- with $v.encryption -}}
{{- if .existingSecret -}}
{{- $dir := printf "%s/encryption" $root -}}
{{- $env = append $env (dict "name" "IDEMPOTENCY_ENCRYPTION_KEYS_FILE" "value" (printf "%s/keys" $dir)) -}}
{{- $files = append $files (dict "name" "idempotency-sidecar-encryption" "secret" .existingSecret "items" (list (dict "key" .existingSecretKey "path" "keys")) "dir" $dir) -}}
{{- end -}}
{{- end -}}

{{- range $files -}}
{{- $volumes = append $volumes (dict "name" .name "secret" (dict "secretName" .secret "items" .items)) -}}
{{- $mounts = append $mounts (dict "name" .name "mountPath" .dir "readOnly" true) -}}
{{- end -}}
{{- toYaml (dict "volumes" $volumes "mounts" $mounts "env" $env) -}}
{{- end -}}

{{- define "idempotency-sidecar.checksum" -}}
{{- toYaml .Values.config | sha256sum | trunc 16 -}}
{{- end -}}

{{/*
The Container object (a map, not a list item). Besides the public keys above:
  native       true: the container is meant for initContainers, as a native sidecar (Kubernetes
               1.29+): restartPolicy Always, so it starts before the app and stops after it.
  forWebhook   true: for the webhook's sidecar template. Left out then, because the webhook sets
               them per pod from its annotations: IDEMPOTENCY_UPSTREAM, IDEMPOTENCY_CONFIG and the
               config volume. The Secret mounts stay; the template's `volumes:` key carries their
               volumes (idempotency-sidecar.secretFiles), which the webhook adds to the pod.
               (The ports and IDEMPOTENCY_PORT / IDEMPOTENCY_ADMIN_PORT stay: they are the defaults
               for pods without the proxy-port / admin-port annotations.)
  appVersion   the default image tag (this chart's .Chart.AppVersion where it renders itself).
*/}}
{{- define "idempotency-sidecar.containerObject" -}}
{{- $v := .Values -}}
{{- $ctx := dict "Values" .Values "Release" .Release -}}
{{- $upstream := "" -}}
{{- if not .forWebhook -}}
{{- if .upstream -}}
{{- $upstream = .upstream -}}
{{- else -}}
{{- $port := required "idempotency-sidecar.container: pass upstreamPort (the app container's port, e.g. 8080) or upstream (a base URL) in the dict" .upstreamPort -}}
{{- $upstream = printf "http://127.0.0.1:%s" (include "idempotency-sidecar.scalar" $port) -}}
{{- end -}}
{{- end -}}
name: {{ .name | default "idempotency-sidecar" }}
image: {{ include "idempotency-sidecar.imageRef" (dict "image" $v.image "defaultTag" (.appVersion | default (include "idempotency-sidecar.appVersion" .))) | quote }}
imagePullPolicy: {{ $v.image.pullPolicy }}
{{- if .native }}
restartPolicy: Always
{{- end }}
ports:
  - name: idem-proxy
    containerPort: {{ include "idempotency-sidecar.scalar" $v.containerPorts.proxy }}
    protocol: TCP
  - name: idem-admin
    containerPort: {{ include "idempotency-sidecar.scalar" $v.containerPorts.admin }}
    protocol: TCP
{{- $env := list }}
{{- if not .forWebhook }}
{{- $env = append $env (dict "name" "IDEMPOTENCY_UPSTREAM" "value" $upstream) }}
{{- end }}
{{- $env = append $env (dict "name" "IDEMPOTENCY_PORT" "value" (include "idempotency-sidecar.scalar" $v.containerPorts.proxy)) }}
{{- $env = append $env (dict "name" "IDEMPOTENCY_ADMIN_PORT" "value" (include "idempotency-sidecar.scalar" $v.containerPorts.admin)) }}
{{- if eq $v.redis.mode "standalone" }}
{{- $ref := dict "name" ($v.redis.existingSecret | default (include "idempotency-sidecar.redisSecretName" $ctx)) "key" $v.redis.existingSecretKey }}
{{- $env = append $env (dict "name" "IDEMPOTENCY_REDIS_URL" "valueFrom" (dict "secretKeyRef" $ref)) }}
{{- else if eq $v.redis.mode "cluster" }}
{{- $env = append $env (dict "name" "IDEMPOTENCY_REDIS_CLUSTER_NODES" "value" (join "," $v.redis.cluster.nodes)) }}
{{- else if eq $v.redis.mode "sentinel" }}
{{- $env = append $env (dict "name" "IDEMPOTENCY_REDIS_SENTINELS" "value" (join "," $v.redis.sentinel.sentinels)) }}
{{- $env = append $env (dict "name" "IDEMPOTENCY_REDIS_SENTINEL_MASTER" "value" (toString $v.redis.sentinel.masterName)) }}
{{- end }}
{{- if has $v.redis.mode (list "cluster" "sentinel") }}
{{- /* The nodes' ACL credentials: by reference to the Secret, never as values. */}}
{{- with $v.redis.auth }}
{{- if .existingSecret }}
{{- if .usernameKey }}
{{- $env = append $env (dict "name" "IDEMPOTENCY_REDIS_USERNAME" "valueFrom" (dict "secretKeyRef" (dict "name" .existingSecret "key" .usernameKey))) }}
{{- end }}
{{- $env = append $env (dict "name" "IDEMPOTENCY_REDIS_PASSWORD" "valueFrom" (dict "secretKeyRef" (dict "name" .existingSecret "key" .passwordKey))) }}
{{- end }}
{{- end }}
{{- if $v.redis.tls.enabled }}
{{- $env = append $env (dict "name" "IDEMPOTENCY_REDIS_TLS" "value" "true") }}
{{- end }}
{{- end }}
{{- if gt (int $v.redis.waitReplicas) 0 }}
{{- $env = append $env (dict "name" "IDEMPOTENCY_REDIS_WAIT_REPLICAS" "value" (include "idempotency-sidecar.scalar" $v.redis.waitReplicas)) }}
{{- with $v.redis.waitTimeout }}
{{- $env = append $env (dict "name" "IDEMPOTENCY_REDIS_WAIT_TIMEOUT" "value" (toString .)) }}
{{- end }}
{{- end }}
{{- if or $v.redlock.existingSecret $v.redlock.urls }}
{{- $ref := dict "name" ($v.redlock.existingSecret | default (include "idempotency-sidecar.redisSecretName" $ctx)) "key" $v.redlock.existingSecretKey }}
{{- $env = append $env (dict "name" "IDEMPOTENCY_REDLOCK_URLS" "valueFrom" (dict "secretKeyRef" $ref)) }}
{{- end }}
{{- with $v.adminToken.existingSecret }}
{{- $env = append $env (dict "name" "IDEMPOTENCY_ADMIN_TOKEN" "valueFrom" (dict "secretKeyRef" (dict "name" . "key" $v.adminToken.existingSecretKey))) }}
{{- end }}
{{- $secretFiles := include "idempotency-sidecar.secretFiles" (dict "Values" $v) | fromYaml }}
{{- $env = concat $env $secretFiles.env }}
{{- if and $v.config (not .forWebhook) }}
{{- $env = append $env (dict "name" "IDEMPOTENCY_CONFIG" "value" "/etc/idempotency-sidecar/config.yaml") }}
{{- end }}
{{- $env = concat $env ($v.extraEnv | default list) }}
{{- with $env }}
env:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- $mounts := list }}
{{- if and $v.config (not .forWebhook) }}
{{- $mounts = append $mounts (dict "name" "idempotency-sidecar-config" "mountPath" "/etc/idempotency-sidecar" "readOnly" true) }}
{{- end }}
{{- $mounts = concat $mounts $secretFiles.mounts }}
{{- with $mounts }}
volumeMounts:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.probes.startup }}
{{- if .enabled }}
startupProbe:
  {{- toYaml (merge (dict "httpGet" (dict "path" "/healthz" "port" "idem-admin")) (omit . "enabled")) | nindent 2 }}
{{- end }}
{{- end }}
{{- with $v.probes.liveness }}
{{- if .enabled }}
livenessProbe:
  {{- toYaml (merge (dict "httpGet" (dict "path" "/healthz" "port" "idem-admin")) (omit . "enabled")) | nindent 2 }}
{{- end }}
{{- end }}
{{- with $v.probes.readiness }}
{{- if .enabled }}
readinessProbe:
  {{- toYaml (merge (dict "httpGet" (dict "path" "/readyz" "port" "idem-admin")) (omit . "enabled")) | nindent 2 }}
{{- end }}
{{- end }}
{{- with $v.resources }}
resources:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml $v.securityContext | nindent 2 }}
{{- end -}}
