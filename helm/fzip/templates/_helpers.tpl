{{/* Names and labels. */}}
{{- define "fzip.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "fzip.fullname" -}}
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

{{- define "fzip.selectorLabels" -}}
app.kubernetes.io/name: {{ include "fzip.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "fzip.commonLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "fzip.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "fzip.labels" -}}
{{ include "fzip.commonLabels" . }}
app.kubernetes.io/component: server
{{- end -}}

{{/* The metrics Service: its own component, which the ServiceMonitor selects. */}}
{{- define "fzip.metricsLabels" -}}
{{ include "fzip.commonLabels" . }}
app.kubernetes.io/component: metrics
{{- end -}}

{{- define "fzip.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "fzip.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Secret names. */}}
{{- define "fzip.storeSecretName" -}}
{{- default (printf "%s-store" (include "fzip.fullname" .)) .Values.store.mongodb.existingSecret -}}
{{- end -}}

{{- define "fzip.jwtSecretName" -}}
{{- default (printf "%s-jwt" (include "fzip.fullname" .)) .Values.auth.jwt.existingSecret -}}
{{- end -}}

{{- define "fzip.jwtSecretKey" -}}
{{- if .Values.auth.jwt.secretKey -}}
{{- .Values.auth.jwt.secretKey -}}
{{- else if eq .Values.auth.jwt.mode "publicKey" -}}
jwt.pub
{{- else -}}
jwt.secret
{{- end -}}
{{- end -}}

{{/* True when the cluster accepts the native preStop sleep action (1.30+). */}}
{{- define "fzip.preStopSleep" -}}
{{- if and (gt (int64 .Values.preStopSleepSeconds) 0) (semverCompare ">=1.30-0" .Capabilities.KubeVersion.Version) -}}
true
{{- end -}}
{{- end -}}

{{- define "fzip.clientCASecretName" -}}
{{- default .Values.tls.existingSecret .Values.tls.clientCA.existingSecret -}}
{{- end -}}

{{- define "fzip.sqliteClaimName" -}}
{{- default (printf "%s-data" (include "fzip.fullname" .)) .Values.store.sqlite.persistence.existingClaim -}}
{{- end -}}

{{/* Integers from values arrive as float64; print them in full. */}}
{{- define "fzip.int" -}}
{{- . | int64 | toString -}}
{{- end -}}

{{- define "fzip.graceSeconds" -}}
{{- $min := add (div (int64 .Values.config.shutdownGraceMs) 1000) (int64 .Values.preStopSleepSeconds) -}}
{{- if and (kindIs "string" .Values.terminationGracePeriodSeconds) (eq .Values.terminationGracePeriodSeconds "") -}}
{{- add $min 15 -}}
{{- else -}}
{{- int64 .Values.terminationGracePeriodSeconds -}}
{{- end -}}
{{- end -}}

{{- define "fzip.probeMode" -}}
{{- if eq .Values.probes.mode "auto" -}}
{{- if .Values.tls.enabled -}}tcp{{- else -}}grpc{{- end -}}
{{- else -}}
{{- .Values.probes.mode -}}
{{- end -}}
{{- end -}}

{{/*
Refuse configurations that cannot work.  Called from every template that
matters, so `helm template` / `helm install` fail before anything is applied.
*/}}
{{- define "fzip.validate" -}}
{{- $type := .Values.store.type -}}
{{- if not (has $type (list "sqlite" "mongodb")) -}}
{{- fail (printf "store.type must be \"sqlite\" or \"mongodb\", not %q" $type) -}}
{{- end -}}
{{- if and (eq $type "sqlite") (gt (int64 .Values.replicaCount) 1) -}}
{{- fail (printf "replicaCount=%d with store.type=sqlite: the embedded SQLite store is one file on one node and cannot be shared by several fzipd replicas; use store.type=mongodb (a mongodb:// URI in a Secret) for replicaCount > 1" (int64 .Values.replicaCount)) -}}
{{- end -}}
{{- if lt (int64 .Values.replicaCount) 0 -}}
{{- fail "replicaCount must be >= 0" -}}
{{- end -}}
{{- if and (eq $type "mongodb") .Values.store.mongodb.uri -}}
{{- if not (or (hasPrefix "mongodb://" .Values.store.mongodb.uri) (hasPrefix "mongodb+srv://" .Values.store.mongodb.uri)) -}}
{{- fail "store.mongodb.uri must start with mongodb:// or mongodb+srv://" -}}
{{- end -}}
{{- end -}}
{{- if not (has .Values.auth.jwt.mode (list "secret" "publicKey")) -}}
{{- fail (printf "auth.jwt.mode must be \"secret\" or \"publicKey\", not %q" .Values.auth.jwt.mode) -}}
{{- end -}}
{{- $jwtSources := 0 -}}
{{- range (list .Values.auth.jwt.existingSecret .Values.auth.jwt.value .Values.auth.jwt.generate) -}}
{{- if . -}}{{- $jwtSources = add1 $jwtSources -}}{{- end -}}
{{- end -}}
{{- if eq $jwtSources 0 -}}
{{- fail "auth.jwt: fzipd needs its JWT key material; set one of auth.jwt.existingSecret (a Secret you created, see values.yaml), auth.jwt.value (the key itself) or auth.jwt.generate=true (the chart creates a random HS256 secret)" -}}
{{- end -}}
{{- if gt $jwtSources 1 -}}
{{- fail "auth.jwt: set only one of existingSecret, value and generate" -}}
{{- end -}}
{{- if and .Values.auth.jwt.generate (ne .Values.auth.jwt.mode "secret") -}}
{{- fail "auth.jwt.generate makes an HS256 secret: it needs auth.jwt.mode=secret (a public key comes from your issuer: use existingSecret or value)" -}}
{{- end -}}
{{- if and .Values.ingress.enabled (not .Values.ingress.host) -}}
{{- fail "ingress.enabled needs ingress.host" -}}
{{- end -}}
{{- if and (eq .Values.auth.jwt.mode "secret") .Values.auth.jwt.value (lt (len .Values.auth.jwt.value) 32) -}}
{{- fail "auth.jwt.value: an HS256 secret must be at least 32 bytes" -}}
{{- end -}}
{{- if and .Values.tls.enabled (not .Values.tls.existingSecret) -}}
{{- fail "tls.enabled needs tls.existingSecret (a Secret with the certificate chain and key)" -}}
{{- end -}}
{{- if and .Values.tls.clientCA.enabled (not .Values.tls.enabled) -}}
{{- fail "tls.clientCA.enabled needs tls.enabled" -}}
{{- end -}}
{{- if not (has .Values.probes.mode (list "auto" "grpc" "tcp")) -}}
{{- fail "probes.mode must be auto, grpc or tcp" -}}
{{- end -}}
{{- if and .Values.tls.enabled (eq .Values.probes.mode "grpc") -}}
{{- fail "probes.mode=grpc with tls.enabled: the kubelet's grpc probe cannot speak TLS; use auto or tcp" -}}
{{- end -}}
{{- if not (has .Values.config.logLevel (list "debug" "info" "warn" "error")) -}}
{{- fail "config.logLevel must be debug, info, warn or error" -}}
{{- end -}}
{{- if not (hasSuffix (printf ":%d" (int64 .Values.containerPort)) .Values.config.listen) -}}
{{- fail (printf "config.listen %q must use containerPort %d" .Values.config.listen (int64 .Values.containerPort)) -}}
{{- end -}}
{{- $need := add (div (add (int64 .Values.config.shutdownGraceMs) 999) 1000) (int64 .Values.preStopSleepSeconds) -}}
{{- if le (int64 (include "fzip.graceSeconds" .)) $need -}}
{{- fail (printf "terminationGracePeriodSeconds=%s must exceed preStopSleepSeconds + config.shutdownGraceMs/1000 = %d, or Kubernetes kills fzipd before in-flight calls finish" (include "fzip.graceSeconds" .) $need) -}}
{{- end -}}
{{- end -}}
