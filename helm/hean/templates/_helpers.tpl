{{/* Chart name, overridable. */}}
{{- define "hean.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name: <release>-<chart> unless the release name already contains it. */}}
{{- define "hean.fullname" -}}
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

{{- define "hean.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Selector labels of the operator pod (immutable: keep them minimal). */}}
{{- define "hean.selectorLabels" -}}
app.kubernetes.io/name: {{ include "hean.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{/* Labels on every object: the user's commonLabels, then the standard labels
     (which win on a clash, so the selector always matches). */}}
{{- define "hean.labelsDict" -}}
{{- $std := dict
      "helm.sh/chart" (include "hean.chart" .)
      "app.kubernetes.io/name" (include "hean.name" .)
      "app.kubernetes.io/instance" .Release.Name
      "app.kubernetes.io/component" "operator"
      "app.kubernetes.io/version" (.Chart.AppVersion | toString)
      "app.kubernetes.io/managed-by" .Release.Service
      "app.kubernetes.io/part-of" "hean" -}}
{{- toYaml (merge $std (deepCopy (.Values.commonLabels | default dict))) -}}
{{- end -}}

{{- define "hean.labels" -}}
{{- include "hean.labelsDict" . -}}
{{- end -}}

{{/* Labels of the operator pod template: labels + podLabels (labels win). */}}
{{- define "hean.podLabels" -}}
{{- $labels := include "hean.labelsDict" . | fromYaml -}}
{{- toYaml (merge $labels (deepCopy (.Values.podLabels | default dict))) -}}
{{- end -}}

{{- define "hean.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "hean.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Image of the operator and of the workers. */}}
{{- define "hean.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag | toString) -}}
{{- end -}}

{{/* Labels of a chart object of another component (redis, tests, dashboards). */}}
{{- define "hean.componentLabels" -}}
{{- $ctx := index . 0 -}}
{{- $labels := include "hean.labelsDict" $ctx | fromYaml -}}
{{- $_ := set $labels "app.kubernetes.io/component" (index . 1) -}}
{{- toYaml $labels -}}
{{- end -}}

{{- define "hean.redisSelectorLabels" -}}
app.kubernetes.io/name: {{ include "hean.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: redis
{{- end -}}

{{- define "hean.redisSecretName" -}}
{{- default (printf "%s-redis" (include "hean.fullname" .)) .Values.redis.auth.existingSecret -}}
{{- end -}}

{{/* True (non-empty) when monitoring.coreos.com/v1 <kind> may be rendered. */}}
{{- define "hean.monitoringAPI" -}}
{{- $ctx := index . 0 -}}
{{- if or $ctx.Values.metrics.assumeMonitoringAPI ($ctx.Capabilities.APIVersions.Has (printf "monitoring.coreos.com/v1/%s" (index . 1))) -}}
true
{{- end -}}
{{- end -}}

{{/* Namespaces that get a worker NetworkPolicy. */}}
{{- define "hean.workerNamespaces" -}}
{{- toJson (uniq (concat .Values.watchNamespaces .Values.networkPolicy.workerNamespaces)) -}}
{{- end -}}

{{/* The restricted-PSS container securityContext shared by every container. */}}
{{- define "hean.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}
