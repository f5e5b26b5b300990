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
{{- printf "%s://%s.%s.svc:%d" (ternary "https" "http" .Values.registry.tls.enabled) (include "beamline-mesh.registryName" .) .Release.Namespace (int .Values.registry.port) -}}
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

{{/* The gateway's client certificate name for agents (wire::tls::GATEWAY_NAME). */}}
{{- define "beamline-mesh.gatewayTlsName" -}}gateway.beamline-mesh{{- end -}}

{{- define "beamline-mesh.upstreamSecret" -}}
{{- default (printf "%s-upstream" (include "beamline-mesh.gatewayName" .)) .Values.gateway.upstreamTls.secretName -}}
{{- end -}}

{{- define "beamline-mesh.registryTls" -}}
{{- if and .Values.registry.embedded .Values.registry.tls.enabled }}true{{ end -}}
{{- end -}}

{{- define "beamline-mesh.registrySecret" -}}
{{- default (printf "%s-tls" (include "beamline-mesh.registryName" .)) .Values.registry.tls.secretName -}}
{{- end -}}

{{/* The CA the gateway trusts for Consul: consul.tls.caSecretName, else the embedded registry's. */}}
{{- define "beamline-mesh.consulCaSecret" -}}
{{- if .Values.consul.tls.caSecretName -}}
{{- .Values.consul.tls.caSecretName -}}
{{- else if eq (include "beamline-mesh.registryTls" .) "true" -}}
{{- include "beamline-mesh.registrySecret" . -}}
{{- end -}}
{{- end -}}

{{- define "beamline-mesh.consulCaKey" -}}
{{- if .Values.consul.tls.caSecretName }}{{ .Values.consul.tls.caKey }}{{ else }}ca.crt{{ end -}}
{{- end -}}

{{/* The gateway's client certificate for Consul: consul.tls.clientSecretName, else (the embedded
registry requires one and has a cert-manager issuer) the Certificate the chart renders. */}}
{{- define "beamline-mesh.consulClientCertificate" -}}
{{- $r := .Values.registry.tls -}}
{{- if and (eq (include "beamline-mesh.registryTls" .) "true") $r.clientCa (not .Values.consul.tls.clientSecretName) $r.certManager.issuerRef.name }}true{{ end -}}
{{- end -}}

{{- define "beamline-mesh.consulClientSecret" -}}
{{- if .Values.consul.tls.clientSecretName -}}
{{- .Values.consul.tls.clientSecretName -}}
{{- else if eq (include "beamline-mesh.consulClientCertificate" .) "true" -}}
{{- printf "%s-consul-client" (include "beamline-mesh.gatewayName" .) -}}
{{- end -}}
{{- end -}}

{{/* A cert-manager.io/v1 Certificate's spec tail: key, lifetime, issuer. */}}
{{- define "beamline-mesh.certificateTail" -}}
privateKey:
  algorithm: ECDSA
  size: 256
  rotationPolicy: Always
{{- with .duration }}
duration: {{ . }}
{{- end }}
{{- with .renewBefore }}
renewBefore: {{ . }}
{{- end }}
issuerRef:
  name: {{ .issuerRef.name }}
  kind: {{ .issuerRef.kind }}
  group: {{ .issuerRef.group }}
{{- end -}}

{{- define "beamline-mesh.gatewayDir" -}}/etc/beamline-mesh{{- end -}}
