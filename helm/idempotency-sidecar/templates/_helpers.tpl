{{/*
Names, labels and small helpers.

Object names never depend on .Chart.Name: they are built from the constant "idempotency-sidecar"
(or nameOverride / fullnameOverride) and the release name. So a chart that includes the
`idempotency-sidecar.container` named template with its own .Chart (and this chart as a dependency,
aliased or not) computes the same Secret and ConfigMap names as this chart's own templates.
*/}}

{{- define "idempotency-sidecar.name" -}}
{{- default "idempotency-sidecar" .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "idempotency-sidecar.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "idempotency-sidecar.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The fullname with a suffix, the whole within 63 characters (Service names are DNS labels). */}}
{{- define "idempotency-sidecar.suffixed" -}}
{{- $suffix := printf "-%s" .suffix -}}
{{- printf "%s%s" (include "idempotency-sidecar.fullname" .ctx | trunc (int (sub 63 (len $suffix))) | trimSuffix "-") $suffix -}}
{{- end -}}

{{- define "idempotency-sidecar.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Selector labels; call with (dict "ctx" $ "component" "gateway"). */}}
{{- define "idempotency-sidecar.selectorLabels" -}}
app.kubernetes.io/name: {{ include "idempotency-sidecar.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Common labels; call with (dict "ctx" $ "component" "gateway"). */}}
{{- define "idempotency-sidecar.labels" -}}
helm.sh/chart: {{ include "idempotency-sidecar.chart" .ctx }}
{{ include "idempotency-sidecar.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | toString | replace "+" "_" | trunc 63 | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: idempotency-sidecar
{{- end -}}

{{- define "idempotency-sidecar.component" -}}
{{- if eq .Values.mode "webhook" -}}webhook{{- else -}}gateway{{- end -}}
{{- end -}}

{{- define "idempotency-sidecar.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "idempotency-sidecar.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The Secret the chart creates from redis.url / redlock.urls. */}}
{{- define "idempotency-sidecar.redisSecretName" -}}
{{- include "idempotency-sidecar.suffixed" (dict "ctx" . "suffix" "redis") -}}
{{- end -}}

{{- define "idempotency-sidecar.configMapName" -}}
{{- include "idempotency-sidecar.suffixed" (dict "ctx" . "suffix" "config") -}}
{{- end -}}

{{- define "idempotency-sidecar.webhookName" -}}
{{- include "idempotency-sidecar.suffixed" (dict "ctx" . "suffix" "webhook") -}}
{{- end -}}

{{- define "idempotency-sidecar.webhookTLSSecretName" -}}
{{- include "idempotency-sidecar.suffixed" (dict "ctx" . "suffix" "webhook-tls") -}}
{{- end -}}

{{- define "idempotency-sidecar.sidecarTemplateName" -}}
{{- include "idempotency-sidecar.suffixed" (dict "ctx" . "suffix" "sidecar-template") -}}
{{- end -}}

{{/* Whether the chart itself creates the Secret `<fullname>-redis`. */}}
{{- define "idempotency-sidecar.createsRedisSecret" -}}
{{- if or (and (eq .Values.redis.mode "standalone") .Values.redis.url (not .Values.redis.existingSecret)) (and .Values.redlock.urls (not .Values.redlock.existingSecret)) -}}true{{- end -}}
{{- end -}}

{{/* An image reference: repository@digest, or repository:tag. Call with (dict "image" ... "defaultTag" ...). */}}
{{- define "idempotency-sidecar.imageRef" -}}
{{- if .image.digest -}}
{{- printf "%s@%s" .image.repository .image.digest -}}
{{- else -}}
{{- printf "%s:%s" .image.repository (default .defaultTag (toString (default "" .image.tag))) -}}
{{- end -}}
{{- end -}}

{{/* A value as a string, with whole numbers (float64 when they come from values files) written without an exponent. */}}
{{- define "idempotency-sidecar.scalar" -}}
{{- if and (kindIs "float64" .) (eq (float64 (int64 .)) .) -}}
{{- int64 . -}}
{{- else -}}
{{- . -}}
{{- end -}}
{{- end -}}

{{/* A duration of the sidecar (250ms, 2s, 24h, 7d) in milliseconds, or "invalid". */}}
{{- define "idempotency-sidecar.durationMillis" -}}
{{- $s := toString . -}}
{{- if regexMatch "^[0-9]+(ms|s|m|h|d)$" $s -}}
{{- $n := regexReplaceAll "^([0-9]+)(ms|s|m|h|d)$" $s "${1}" | int64 -}}
{{- $unit := regexReplaceAll "^([0-9]+)(ms|s|m|h|d)$" $s "${2}" -}}
{{- $factor := get (dict "ms" 1 "s" 1000 "m" 60000 "h" 3600000 "d" 86400000) $unit -}}
{{- mul $n $factor -}}
{{- else -}}
invalid
{{- end -}}
{{- end -}}

{{/*
A sidecar setting as the sidecar will see it: extraEnv wins over config, as a variable wins over
the file. Call with (dict "Values" ... "key" "storeTimeout" "env" "IDEMPOTENCY_STORE_TIMEOUT" "default" "1s").
*/}}
{{- define "idempotency-sidecar.setting" -}}
{{- $value := .default -}}
{{- if hasKey .Values.config .key -}}
{{- $value = toString (get .Values.config .key) -}}
{{- end -}}
{{- $env := .env -}}
{{- range .Values.extraEnv -}}
{{- if and (eq (toString .name) $env) (hasKey . "value") -}}
{{- $value = toString .value -}}
{{- end -}}
{{- end -}}
{{- $value -}}
{{- end -}}

{{/* The shutdown grace the sidecar will use: extraEnv wins over config, as a variable wins over the file. */}}
{{- define "idempotency-sidecar.shutdownGrace" -}}
{{- $grace := "25s" -}}
{{- if hasKey .Values.config "shutdownGrace" -}}
{{- $grace = toString (get .Values.config "shutdownGrace") -}}
{{- end -}}
{{- range .Values.extraEnv -}}
{{- if and (eq (toString .name) "IDEMPOTENCY_SHUTDOWN_GRACE") (hasKey . "value") -}}
{{- $grace = toString .value -}}
{{- end -}}
{{- end -}}
{{- $grace -}}
{{- end -}}

{{/* Pod scheduling fields shared by the gateway and webhook Deployments; call with (dict "ctx" $ "component" ...). */}}
{{- define "idempotency-sidecar.podScheduling" -}}
{{- $ctx := .ctx -}}
{{- with $ctx.Values.priorityClassName }}
priorityClassName: {{ . | quote }}
{{- end }}
{{- with $ctx.Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $ctx.Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $ctx.Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if $ctx.Values.topologySpreadConstraints }}
topologySpreadConstraints:
{{- range $ctx.Values.topologySpreadConstraints }}
  {{- $constraint := . }}
  {{- if not (hasKey . "labelSelector") }}
  {{- $constraint = merge (dict "labelSelector" (dict "matchLabels" (include "idempotency-sidecar.selectorLabels" (dict "ctx" $ctx "component" $.component) | fromYaml))) . }}
  {{- end }}
  - {{ toYaml $constraint | nindent 4 | trim }}
{{- end }}
{{- end }}
{{- end -}}

{{/* A PodDisruptionBudget count: a number as is, a percentage quoted. */}}
{{- define "idempotency-sidecar.pdbValue" -}}
{{- $s := include "idempotency-sidecar.scalar" . -}}
{{- if regexMatch "^[0-9]+$" $s -}}{{ $s }}{{- else -}}{{ $s | quote }}{{- end -}}
{{- end -}}
