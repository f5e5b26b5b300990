{{- define "beamline-agent.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "beamline-agent.fullname" -}}
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

{{/* The beamline id, required (values.schema.json also checks its form). */}}
{{- define "beamline-agent.beamline" -}}
{{- required "beamline is required, e.g. --set beamline=5.3.1" .Values.beamline -}}
{{- end -}}

{{- define "beamline-agent.selector" -}}
app.kubernetes.io/name: {{ include "beamline-agent.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "beamline-agent.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: agent
app.kubernetes.io/part-of: beamline-mesh
beamline-mesh/beamline: {{ include "beamline-agent.beamline" . | quote }}
{{ include "beamline-agent.selector" . }}
{{- end -}}

{{/* Drain budget: the agent's --drain-grace plus --drain-timeout, in seconds. */}}
{{- define "beamline-agent.drainSeconds" -}}
{{- add (int .Values.agent.drainGraceSeconds) (int .Values.agent.drainTimeoutSeconds) -}}
{{- end -}}

{{/* Longer than the drain, so Kubernetes never SIGKILLs a draining agent. */}}
{{- define "beamline-agent.terminationGracePeriodSeconds" -}}
{{- $drain := int (include "beamline-agent.drainSeconds" .) -}}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds -}}
{{- add $drain 15 -}}
{{- else -}}
{{- $t := int .Values.terminationGracePeriodSeconds -}}
{{- if le $t $drain -}}
{{- fail (printf "terminationGracePeriodSeconds (%d) must exceed agent.drainGraceSeconds + agent.drainTimeoutSeconds (%d)" $t $drain) -}}
{{- end -}}
{{- $t -}}
{{- end -}}
{{- end -}}

{{/* The Consul service name the agent derives from the id (BeamlineId::service_name):
beamline- + the id in lower case, dots as dashes. */}}
{{- define "beamline-agent.serviceName" -}}
{{- printf "beamline-%s" (include "beamline-agent.beamline" . | lower | replace "." "-") -}}
{{- end -}}

{{/* The DNS name the agent's certificate carries (wire::tls::agent_name). */}}
{{- define "beamline-agent.tlsName" -}}
{{- printf "%s.service.consul" (include "beamline-agent.serviceName" .) -}}
{{- end -}}

{{- define "beamline-agent.tlsSecret" -}}
{{- default (printf "%s-tls" (include "beamline-agent.fullname" .)) .Values.tls.secretName -}}
{{- end -}}

{{/* Where the Secrets are mounted in the container. */}}
{{- define "beamline-agent.tlsDir" -}}/etc/beamline-agent/tls{{- end -}}
{{- define "beamline-agent.consulCaDir" -}}/etc/beamline-agent/consul-ca{{- end -}}
{{- define "beamline-agent.consulClientDir" -}}/etc/beamline-agent/consul-client{{- end -}}
