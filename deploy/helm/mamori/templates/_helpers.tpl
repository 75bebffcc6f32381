{{/* The agent's configuration file, as a map: what the chart sets, then agentConfig over it. */}}
{{- define "mamori.config" -}}
{{- /* gRPC on the unix socket; on TCP only with mutual TLS (the agent refuses TCP without) */ -}}
{{- $api := dict "listen" (list "unix:///run/mamori/mamori.sock") -}}
{{- if .Values.api.tls.enabled -}}
{{- $_ := set $api "listen" (list "unix:///run/mamori/mamori.sock" (printf "%s:%v" .Values.api.address .Values.api.port)) -}}
{{- $_ := set $api "tls_cert" "/etc/mamori/tls/tls.crt" -}}
{{- $_ := set $api "tls_key" "/etc/mamori/tls/tls.key" -}}
{{- $_ := set $api "tls_client_ca" "/etc/mamori/tls/ca.crt" -}}
{{- with .Values.api.adminIdentities -}}
{{- $_ := set $api "admin_identities" . -}}
{{- end -}}
{{- end -}}
{{- $cfg := dict
      "kubernetes" (dict "mode" "in-cluster")
      "rules" (dict "paths" (list "/opt/mamori/rules" "/etc/mamori/rules.d"))
      "response" (dict "policy" "/etc/mamori/policy/policy.yaml")
      "alerts" (dict "journal_dir" "/var/lib/mamori/journal")
      "api" $api
      "metrics" (dict "listen" (printf "127.0.0.1:%v" .Values.metrics.port))
      "sensor" (dict "ring_bytes" .Values.sensor.ringBytes) -}}
{{- toYaml (mustMergeOverwrite $cfg (deepCopy .Values.agentConfig)) -}}
{{- end -}}

{{/* A host path as a volume name: /var/lib/containerd -> var-lib-containerd */}}
{{- define "mamori.volumeName" -}}
{{- trimPrefix "/" . | replace "/" "-" -}}
{{- end -}}

{{/* The image, by digest when image.digest is set (the tag then only says which it was). */}}
{{- define "mamori.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}:{{ .Values.image.tag }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag }}
{{- end -}}
{{- end -}}
