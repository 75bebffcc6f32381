{{/* The agent's configuration file, as a map: what the chart sets, then agentConfig over it. */}}
{{- define "mamori.config" -}}
{{- $api := dict "listen" (list "unix:///run/mamori/mamori.sock" (printf "%s:%v" .Values.api.address .Values.api.port)) -}}
{{- if .Values.api.tls.enabled -}}
{{- $_ := set $api "tls_cert" "/etc/mamori/tls/tls.crt" -}}
{{- $_ := set $api "tls_key" "/etc/mamori/tls/tls.key" -}}
{{- if .Values.api.tls.mutual -}}
{{- $_ := set $api "tls_client_ca" "/etc/mamori/tls/ca.crt" -}}
{{- end -}}
{{- end -}}
{{- $cfg := dict
      "kubernetes" (dict "mode" "in-cluster")
      "rules" (dict "paths" (list "/opt/mamori/rules" "/etc/mamori/rules.d"))
      "response" (dict "policy" "/etc/mamori/policy/policy.yaml")
      "alerts" (dict "journal_dir" "/var/lib/mamori/journal")
      "api" $api
      "metrics" (dict "listen" (printf "0.0.0.0:%v" .Values.metrics.port))
      "sensor" (dict "ring_bytes" .Values.sensor.ringBytes) -}}
{{- toYaml (mustMergeOverwrite $cfg (deepCopy .Values.agentConfig)) -}}
{{- end -}}

{{/* A host path as a volume name: /var/lib/containerd -> var-lib-containerd */}}
{{- define "mamori.volumeName" -}}
{{- trimPrefix "/" . | replace "/" "-" -}}
{{- end -}}
