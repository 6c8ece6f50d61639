{{/* Rules the operator needs in every namespace it manages (namespaced resources). */}}
{{- define "hean.operatorNamespacedRules" -}}
  # The custom resources it reconciles.
  - apiGroups: ["hean.io"]
    resources: ["tradingstrategies", "riskpolicies", "symbolquarantines"]
    verbs: ["get", "list", "watch", "patch", "update"]
  # Workers' Roles may create SymbolQuarantines (RiskPolicy spec.autoQuarantine);
  # RBAC only lets the operator grant what it holds itself.
  - apiGroups: ["hean.io"]
    resources: ["symbolquarantines"]
    verbs: ["create"]
  - apiGroups: ["hean.io"]
    resources: ["tradingstrategies/status", "riskpolicies/status", "symbolquarantines/status"]
    verbs: ["get", "patch", "update"]
  # Worker pods and their identities.
  - apiGroups: [""]
    resources: ["pods"]
    verbs: ["get", "list", "watch", "create", "delete", "patch"]
  # The workers' Redis URL/password Secret (hean-worker-redis) in each strategy
  # namespace: create and update only, never read or list other Secrets.
  - apiGroups: [""]
    resources: ["secrets"]
    verbs: ["create", "patch"]
  - apiGroups: [""]
    resources: ["serviceaccounts"]
    verbs: ["get", "list", "watch", "create", "patch", "delete"]
  - apiGroups: ["rbac.authorization.k8s.io"]
    resources: ["roles", "rolebindings"]
    verbs: ["get", "list", "watch", "create", "patch", "delete"]
  # Events (kopf posts core/v1 Events; newer clients use events.k8s.io).
  - apiGroups: [""]
    resources: ["events"]
    verbs: ["create", "patch"]
  - apiGroups: ["events.k8s.io"]
    resources: ["events"]
    verbs: ["create", "patch"]
  {{- if .Values.rbac.leases }}
  - apiGroups: ["coordination.k8s.io"]
    resources: ["leases"]
    verbs: ["get", "list", "watch", "create", "update"]
  {{- end }}
{{- end -}}
