{{/*
Expand the name of the chart.
*/}}
{{- define "bge-predictor.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Create a default fully qualified app name.
We truncate at 63 chars because some Kubernetes name fields are limited to this (by the DNS naming
spec). If release name contains chart name it will be used as a full name.
Component objects append "-embedder" / "-reranker", so the base is cut to 50 characters.
*/}}
{{- define "bge-predictor.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Create chart name and version as used by the chart label.
*/}}
{{- define "bge-predictor.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels
*/}}
{{- define "bge-predictor.labels" -}}
helm.sh/chart: {{ include "bge-predictor.chart" . }}
{{ include "bge-predictor.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: bge-predictor
{{- end }}

{{/*
Selector labels
*/}}
{{- define "bge-predictor.selectorLabels" -}}
app.kubernetes.io/name: {{ include "bge-predictor.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Per-component helpers. Call with (dict "root" $ "component" "embedder").
*/}}
{{- define "bge-predictor.component.values" -}}
{{- index .root.Values .component | toYaml }}
{{- end }}

{{- define "bge-predictor.component.fullname" -}}
{{- printf "%s-%s" (include "bge-predictor.fullname" .root) .component | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "bge-predictor.component.labels" -}}
{{ include "bge-predictor.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "bge-predictor.component.selectorLabels" -}}
{{ include "bge-predictor.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/*
Create the name of the service account to use
*/}}
{{- define "bge-predictor.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "bge-predictor.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Image reference.
*/}}
{{- define "bge-predictor.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion | toString) }}
{{- end }}
{{- end }}

{{/*
Name and key of the Secret holding the API token; empty name when auth is off.
*/}}
{{- define "bge-predictor.apiTokenSecretName" -}}
{{- if .Values.apiToken.existingSecret }}
{{- .Values.apiToken.existingSecret }}
{{- else if .Values.apiToken.value }}
{{- printf "%s-api-token" (include "bge-predictor.fullname" .) }}
{{- end }}
{{- end }}

{{/*
Is the GPU on for a component? The component's gpu.enabled wins over the global one.
*/}}
{{- define "bge-predictor.component.gpuEnabled" -}}
{{- $c := index .root.Values .component }}
{{- $g := $c.gpu | default dict }}
{{- if hasKey $g "enabled" }}
{{- ternary "true" "" (eq (toString $g.enabled) "true") }}
{{- else }}
{{- ternary "true" "" (eq (toString .root.Values.gpu.enabled) "true") }}
{{- end }}
{{- end }}

{{/*
Container resources of a component: its resources, plus the GPU in limits and requests when on.
*/}}
{{- define "bge-predictor.component.resources" -}}
{{- $c := index .root.Values .component }}
{{- $res := deepCopy ($c.resources | default dict) }}
{{- $limits := $res.limits | default dict }}
{{- $requests := $res.requests | default dict }}
{{- if include "bge-predictor.component.gpuEnabled" . }}
{{- $g := $c.gpu | default dict }}
{{- $count := $g.count | default .root.Values.gpu.count }}
{{- $name := $g.resourceName | default .root.Values.gpu.resourceName }}
{{- $_ := set $limits $name $count }}
{{- $_ := set $requests $name $count }}
{{- end }}
{{- if $limits }}{{ $_ := set $res "limits" $limits }}{{ end }}
{{- if $requests }}{{ $_ := set $res "requests" $requests }}{{ end }}
{{- toYaml $res }}
{{- end }}

{{/*
Model argument a component's process gets: /mnt/models under KServe with a storageUri, else the
Hugging Face id or local path in <component>.model.
*/}}
{{- define "bge-predictor.component.modelArg" -}}
{{- $c := index .root.Values .component }}
{{- if and (eq .root.Values.mode "kserve") $c.storageUri }}
{{- print "/mnt/models" }}
{{- else }}
{{- $c.model }}
{{- end }}
{{- end }}

{{/*
Command-line arguments of a component's container.
*/}}
{{- define "bge-predictor.component.args" -}}
{{- $c := index .root.Values .component }}
{{- $model := include "bge-predictor.component.modelArg" . }}
{{- if eq .component "embedder" }}
- --embedder={{ $model }}
- --embedder_name={{ $c.name }}
- --reranker=none
{{- else }}
- --reranker={{ $model }}
- --reranker_name={{ $c.name }}
- --embedder=none
{{- end }}
- --http_port={{ .root.Values.containerPorts.http }}
- --grpc_port={{ .root.Values.containerPorts.grpc }}
{{- range $c.extraArgs }}
- {{ . | quote }}
{{- end }}
{{- end }}

{{/*
Environment of a component's container.
*/}}
{{- define "bge-predictor.component.env" -}}
{{- $c := index .root.Values .component }}
{{- $gpu := include "bge-predictor.component.gpuEnabled" . }}
{{- /* GPU on and no device given: DEVICE stays unset, so the server takes every GPU the pod
gets (its default), and gpu.count alone makes a pod multi-GPU. */}}
{{- $device := $c.device | default (ternary "" "cpu" (eq $gpu "true")) }}
{{- if $device }}
- name: DEVICE
  value: {{ $device | quote }}
{{- end }}
- name: USE_FP16
  value: {{ $c.useFp16 | toString | quote }}
- name: DTYPE
  value: {{ $c.dtype | default "auto" | quote }}
{{- if .root.Values.modelCache.enabled }}
- name: HF_HOME
  value: {{ .root.Values.modelCache.mountPath | quote }}
{{- end }}
- name: HOME
  value: /tmp
- name: GRACE_PERIOD
  value: {{ $c.gracePeriod | int64 | toString | quote }}
{{- with $c.engine }}
{{- if not (kindIs "invalid" .maxBatchTokens) }}
- name: MAX_BATCH_TOKENS
  value: {{ .maxBatchTokens | int64 | toString | quote }}
{{- end }}
{{- if not (kindIs "invalid" .maxBatchSize) }}
- name: MAX_BATCH_SIZE
  value: {{ .maxBatchSize | int64 | toString | quote }}
{{- end }}
{{- if not (kindIs "invalid" .batchWaitMs) }}
- name: BATCH_WAIT_MS
  value: {{ .batchWaitMs | toString | quote }}
{{- end }}
{{- if not (kindIs "invalid" .maxQueueSize) }}
- name: MAX_QUEUE_SIZE
  value: {{ .maxQueueSize | int64 | toString | quote }}
{{- end }}
{{- end }}
{{- if eq .component "embedder" }}
{{- with $c.sparse }}
- name: SPARSE_TOKEN_MAPPING
  value: {{ .tokenMapping | quote }}
- name: SPARSE_INDEX_SPACE
  value: {{ .indexSpace | int64 | toString | quote }}
{{- end }}
{{- end }}
{{- $secret := include "bge-predictor.apiTokenSecretName" .root }}
{{- if $secret }}
- name: API_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ .root.Values.apiToken.secretKey }}
{{- end }}
{{- with .root.Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- with $c.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Probes. The paths are fixed by the server: readiness and startup wait for the model,
liveness only for the process.
*/}}
{{- define "bge-predictor.component.probes" -}}
{{- $c := index .root.Values .component }}
{{- $port := .port }}
{{- $ready := printf "/v2/models/%s/ready" $c.name }}
{{- with $c.startupProbe }}
{{- if .enabled }}
startupProbe:
  httpGet:
    path: {{ $ready }}
    port: {{ $port }}
  {{- toYaml (omit . "enabled") | nindent 2 }}
{{- end }}
{{- end }}
{{- with $c.readinessProbe }}
{{- if .enabled }}
readinessProbe:
  httpGet:
    path: {{ $ready }}
    port: {{ $port }}
  {{- toYaml (omit . "enabled") | nindent 2 }}
{{- end }}
{{- end }}
{{- with $c.livenessProbe }}
{{- if .enabled }}
livenessProbe:
  httpGet:
    path: /v2/health/live
    port: {{ $port }}
  {{- toYaml (omit . "enabled") | nindent 2 }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Volumes every predictor pod needs with a read-only root filesystem: /tmp, /dev/shm and the
Hugging Face cache.
*/}}
{{- define "bge-predictor.component.volumes" -}}
- name: tmp
  emptyDir:
    {{- with .root.Values.tmpVolume.sizeLimit }}
    sizeLimit: {{ . }}
    {{- else }}
    {}
    {{- end }}
- name: dshm
  emptyDir:
    medium: Memory
    {{- with .root.Values.shm.sizeLimit }}
    sizeLimit: {{ . }}
    {{- end }}
{{- if .root.Values.modelCache.enabled }}
- name: model-cache
  {{- $p := .root.Values.modelCache.persistence }}
  {{- if and $p.enabled (eq .root.Values.mode "standalone") }}
  persistentVolumeClaim:
    claimName: {{ $p.existingClaim | default (printf "%s-cache" (include "bge-predictor.component.fullname" .)) }}
  {{- else if and $p.enabled $p.existingClaim }}
  persistentVolumeClaim:
    claimName: {{ $p.existingClaim }}
  {{- else }}
  emptyDir:
    {{- with .root.Values.modelCache.sizeLimit }}
    sizeLimit: {{ . }}
    {{- else }}
    {}
    {{- end }}
  {{- end }}
{{- end }}
{{- with .root.Values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "bge-predictor.component.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
- name: dshm
  mountPath: /dev/shm
{{- if .root.Values.modelCache.enabled }}
- name: model-cache
  mountPath: {{ .root.Values.modelCache.mountPath }}
{{- end }}
{{- with .root.Values.extraVolumeMounts }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Enabled components, as a list of names.
*/}}
{{- define "bge-predictor.components" -}}
{{- $out := list }}
{{- range $comp := list "embedder" "reranker" }}
{{- if (index $.Values $comp).enabled }}
{{- $out = append $out $comp }}
{{- end }}
{{- end }}
{{- toJson $out }}
{{- end }}

{{/*
Security contexts. runAsFixedUser=false (OpenShift's restricted SCC assigns the uid from the
namespace's range and refuses a fixed one) or an oci:// storageUri (KServe's modelcar sets the
uid itself) drop runAsUser / runAsGroup / fsGroup; runAsNonRoot and the rest stay.
*/}}
{{- define "bge-predictor.fixedIds" -}}
{{- $c := index .root.Values .component | default dict }}
{{- $oci := and (eq .root.Values.mode "kserve") (hasPrefix "oci://" ($c.storageUri | default "")) }}
{{- if and .root.Values.runAsFixedUser (not $oci) }}true{{ end }}
{{- end }}

{{- define "bge-predictor.podSecurityContext" -}}
{{- $sc := deepCopy .root.Values.podSecurityContext }}
{{- if not (include "bge-predictor.fixedIds" .) }}
{{- $sc = omit $sc "runAsUser" "runAsGroup" "fsGroup" }}
{{- end }}
{{- toYaml $sc }}
{{- end }}

{{- define "bge-predictor.containerSecurityContext" -}}
{{- $sc := deepCopy .root.Values.securityContext }}
{{- if not (include "bge-predictor.fixedIds" .) }}
{{- $sc = omit $sc "runAsUser" "runAsGroup" }}
{{- end }}
{{- toYaml $sc }}
{{- end }}

{{/*
terminationGracePeriodSeconds: the component's explicit value, else its gracePeriod (how long the
server keeps serving in-flight work after SIGTERM) plus gracePeriodMarginSeconds (time to exit
after that) so the kubelet's SIGKILL never cuts the drain short.
*/}}
{{- define "bge-predictor.terminationGracePeriod" -}}
{{- $c := index .root.Values .component }}
{{- if not (kindIs "invalid" $c.terminationGracePeriodSeconds) }}
{{- $c.terminationGracePeriodSeconds | int64 }}
{{- else }}
{{- add ($c.gracePeriod | int64) (.root.Values.gracePeriodMarginSeconds | int64) }}
{{- end }}
{{- end }}

{{/*
A component's rollout strategy. Helm merges a user's strategy into the default one, so a
Recreate would keep the default's rollingUpdate block, which the API server refuses: drop it.
*/}}
{{- define "bge-predictor.component.strategy" -}}
{{- $s := deepCopy ((index .root.Values .component).strategy | default dict) }}
{{- if eq (toString $s.type) "Recreate" }}
{{- $s = omit $s "rollingUpdate" }}
{{- end }}
{{- if $s }}{{ toYaml $s }}{{ end }}
{{- end }}
