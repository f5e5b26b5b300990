{{- define "beamline-mesh.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "beamline-mesh.fullname" -}}
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

{{- define "beamline-mesh.gatewayName" -}}
{{- printf "%s-gateway" (include "beamline-mesh.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "beamline-mesh.registryName" -}}
{{- printf "%s-registry" (include "beamline-mesh.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "beamline-mesh.commonLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "beamline-mesh.labels" -}}
{{ include "beamline-mesh.commonLabels" . }}
app.kubernetes.io/name: {{ include "beamline-mesh.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "beamline-mesh.gatewaySelector" -}}
app.kubernetes.io/name: {{ include "beamline-mesh.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: gateway
{{- end -}}

{{- define "beamline-mesh.registrySelector" -}}
app.kubernetes.io/name: {{ include "beamline-mesh.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: registry
{{- end -}}

{{- define "beamline-mesh.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "beamline-mesh.authSecret" -}}
{{- default (printf "%s-auth" (include "beamline-mesh.fullname" .)) .Values.gateway.authFile.secretName -}}
{{- end -}}

{{/* The Consul HTTP address the gateway uses. */}}
{{- define "beamline-mesh.consulAddress" -}}
{{- if .Values.registry.embedded -}}
{{- printf "http://%s.%s.svc:%d" (include "beamline-mesh.registryName" .) .Release.Namespace (int .Values.registry.port) -}}
{{- else -}}
{{- required "consul.address is required when registry.embedded is false" .Values.consul.address -}}
{{- end -}}
{{- end -}}

{{- define "beamline-mesh.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "beamline-mesh.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
{{- end -}}
