{{/* Names and labels shared by every template. */}}

{{- define "saola.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release's resource prefix: RELEASE-saola, or RELEASE when it already contains the name. */}}
{{- define "saola.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "saola.router.fullname" -}}
{{- printf "%s-router" (include "saola.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "saola.worker.fullname" -}}
{{- printf "%s-worker" (include "saola.fullname" .) | trunc 52 | trimSuffix "-" -}}
{{- end -}}

{{/* The headless Service that routers resolve to find every ready worker pod. */}}
{{- define "saola.worker.headless" -}}
{{- printf "%s-headless" (include "saola.worker.fullname" .) -}}
{{- end -}}

{{- define "saola.redis.fullname" -}}
{{- printf "%s-redis" (include "saola.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "saola.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "saola.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: saola
{{- end -}}

{{/* Selector labels of one component: (dict "ctx" $ "component" "router"). */}}
{{- define "saola.selectorLabels" -}}
app.kubernetes.io/name: {{ include "saola.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "saola.componentLabels" -}}
{{ include "saola.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* registry/repository:tag of an image block. */}}
{{- define "saola.image" -}}
{{- $registry := default .ctx.Values.image.registry .image.registry -}}
{{- if $registry -}}
{{- printf "%s/%s:%s" $registry .image.repository (.image.tag | toString) -}}
{{- else -}}
{{- printf "%s:%s" .image.repository (.image.tag | toString) -}}
{{- end -}}
{{- end -}}

{{/* The Redis URL routers use: the chart's own Redis, the external one, or none (memory). */}}
{{- define "saola.redisUrl" -}}
{{- if .Values.redis.enabled -}}
{{- printf "redis://%s:%d" (include "saola.redis.fullname" .) (int .Values.redis.port) -}}
{{- else -}}
{{- .Values.redis.externalUrl -}}
{{- end -}}
{{- end -}}

{{/* The router's --workers: every address of the workers' headless Service. */}}
{{- define "saola.workersTarget" -}}
{{- printf "dns:///%s.%s.svc.%s:%d" (include "saola.worker.headless" .) .Release.Namespace .Values.clusterDomain (int .Values.worker.grpcPort) -}}
{{- end -}}

{{- define "saola.apiKeysSecret" -}}
{{- default (printf "%s-api-keys" (include "saola.router.fullname" .)) .Values.router.apiKeys.existingSecret -}}
{{- end -}}

{{/*
Termination grace: the preStop sleep, then the binary's own drain, plus 15 s for the process to
flush and exit. Kubernetes kills the pod at this limit, so it must exceed the drain time.
*/}}
{{- define "saola.terminationGrace" -}}
{{- add (int .preStop) (int .drain) 15 -}}
{{- end -}}

{{/* Fails the render on values that cannot work together. */}}
{{- define "saola.validate" -}}
{{- if and (gt (int .Values.worker.tensorParallelSize) 1) (not .Values.worker.gpu.enabled) -}}
{{- fail "worker.tensorParallelSize > 1 needs worker.gpu.enabled=true (one GPU per rank)" -}}
{{- end -}}
{{- if and (eq .Values.worker.model.source "pvc") (not .Values.worker.model.pvc.claimName) -}}
{{- fail "worker.model.source=pvc needs worker.model.pvc.claimName" -}}
{{- end -}}
{{- if and .Values.redis.enabled .Values.redis.externalUrl -}}
{{- fail "set either redis.enabled or redis.externalUrl, not both" -}}
{{- end -}}
{{- if and (not .Values.router.exactCache.enabled) (or .Values.redis.enabled .Values.redis.externalUrl) -}}
{{- fail "router.exactCache.enabled=false: turn redis off too (redis.enabled=false, no externalUrl)" -}}
{{- end -}}
{{- if and .Values.router.apiKeys.enabled (not .Values.router.apiKeys.existingSecret) (not .Values.router.apiKeys.keys) -}}
{{- fail "router.apiKeys.enabled needs router.apiKeys.existingSecret or router.apiKeys.keys" -}}
{{- end -}}
{{- end -}}
