{{/*
Fine-tuning (docs/finetune.md): the Job that runs `python -m predictor.finetune`, used by
finetune-job.yaml (finetune.enabled) and, without data and arguments, as the template the
embedder's /fine-tune routes create Jobs from (finetune-rbac.yaml, finetune.routes.enabled).
*/}}

{{- define "bge-predictor.finetune.fullname" -}}
{{- printf "%s-finetune" (include "bge-predictor.fullname" .) | trunc 52 | trimSuffix "-" }}
{{- end }}

{{- define "bge-predictor.finetune.outputClaim" -}}
{{- .Values.finetune.output.existingClaim | default (printf "%s-output" (include "bge-predictor.finetune.fullname" .)) }}
{{- end }}

{{- define "bge-predictor.finetune.outputDir" -}}
{{- printf "%s/%s" .Values.finetune.output.mountPath .Values.finetune.output.subPath | clean }}
{{- end }}

{{/* Where --data points: a mounted ConfigMap or PVC file, or the URL. */}}
{{- define "bge-predictor.finetune.dataArg" -}}
{{- $d := .Values.finetune.data }}
{{- $n := 0 }}
{{- if $d.inline }}{{ $n = add1 $n }}{{ end }}
{{- if $d.configMap.name }}{{ $n = add1 $n }}{{ end }}
{{- if $d.pvc.claimName }}{{ $n = add1 $n }}{{ end }}
{{- if $d.url }}{{ $n = add1 $n }}{{ end }}
{{- if ne $n 1 }}
{{- fail "finetune.enabled needs exactly one of finetune.data.inline, .configMap.name, .pvc.claimName, .url" }}
{{- end }}
{{- if $d.url }}{{ $d.url }}
{{- else if $d.pvc.claimName }}{{ printf "/data/%s" $d.pvc.path }}
{{- else if $d.configMap.name }}{{ printf "/data/%s" $d.configMap.key }}
{{- else }}/data/train.tsv
{{- end }}
{{- end }}

{{/*
The Job. Call with (dict "root" $ "name" NAME "args" LIST "data" BOOL).
*/}}
{{- define "bge-predictor.finetune.job" -}}
{{- $root := .root }}
{{- $f := $root.Values.finetune }}
{{- $ctx := dict "root" $root "component" "finetune" }}
apiVersion: batch/v1
kind: Job
metadata:
  {{- with .name }}
  name: {{ . }}
  {{- end }}
  labels:
    {{- include "bge-predictor.component.labels" $ctx | nindent 4 }}
    {{- with $root.Values.commonLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  backoffLimit: {{ $f.backoffLimit }}
  {{- if not (kindIs "invalid" $f.ttlSecondsAfterFinished) }}
  ttlSecondsAfterFinished: {{ $f.ttlSecondsAfterFinished }}
  {{- end }}
  {{- with $f.activeDeadlineSeconds }}
  activeDeadlineSeconds: {{ . }}
  {{- end }}
  template:
    metadata:
      labels:
        {{- include "bge-predictor.component.labels" $ctx | nindent 8 }}
        {{- with $root.Values.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- with $root.Values.podAnnotations }}
      annotations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
    spec:
      restartPolicy: Never
      {{- with $root.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      automountServiceAccountToken: false
      securityContext:
        {{- toYaml $root.Values.podSecurityContext | nindent 8 }}
      {{- with $f.runtimeClassName }}
      runtimeClassName: {{ . }}
      {{- end }}
      {{- with $f.priorityClassName }}
      priorityClassName: {{ . }}
      {{- end }}
      # SIGTERM makes the run save a checkpoint (exit 75); the Job's retry resumes from it.
      terminationGracePeriodSeconds: {{ $f.terminationGracePeriodSeconds }}
      containers:
        - name: finetune
          image: {{ include "bge-predictor.image" $root | quote }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          command: ["python", "-m", "predictor.finetune"]
          args:
            {{- toYaml .args | nindent 12 }}
          env:
            - name: HF_HOME
              value: /cache/huggingface
            - name: TOKENIZERS_PARALLELISM
              value: "false"
            {{- with $root.Values.extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
            {{- with $f.extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          resources:
            {{- include "bge-predictor.component.resources" $ctx | trim | nindent 12 }}
          securityContext:
            {{- toYaml $root.Values.securityContext | nindent 12 }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
            - name: cache
              mountPath: /cache
            - name: dshm
              mountPath: /dev/shm
            - name: output
              mountPath: {{ $f.output.mountPath }}
            {{- if and .data (not $f.data.url) }}
            - name: data
              mountPath: /data
              readOnly: true
            {{- end }}
      volumes:
        - name: tmp
          emptyDir: {}
        - name: cache
          emptyDir:
            {{- with $f.cacheSizeLimit }}
            sizeLimit: {{ . }}
            {{- else }}
            {}
            {{- end }}
        - name: dshm
          emptyDir:
            medium: Memory
        - name: output
          persistentVolumeClaim:
            claimName: {{ include "bge-predictor.finetune.outputClaim" $root }}
        {{- if and .data (not $f.data.url) }}
        - name: data
          {{- if $f.data.pvc.claimName }}
          persistentVolumeClaim:
            claimName: {{ $f.data.pvc.claimName }}
            readOnly: true
          {{- else }}
          configMap:
            name: {{ $f.data.configMap.name | default (printf "%s-data" (include "bge-predictor.finetune.fullname" $root)) }}
          {{- end }}
        {{- end }}
      {{- with $f.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $f.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $f.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
{{- end }}
