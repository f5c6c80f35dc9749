"""Names that CloudWatch alarms watch. The app emits them; ``infra/`` alarms on them, so a
rename here moves both sides at once.

Powertools ``Metrics`` adds a ``service`` dimension to every metric; the alarms match it.
"""

NAMESPACE = "LLMConnections"
SERVICE = "llm-connections"

# Count 1 when a daily run fails operationally: the dispatcher could not queue the due
# connections, or a worker batch failed as a whole. A connection whose *test* fails (a user's
# revoked key) is not a run failure: that is ConnectionsFailed, and the owner's alert.
DAILY_RUN_FAILED = "DailyRunFailed"

# Count 1 per alert that could not be published to the alerts topic after retries.
ALERT_PUBLISH_FAILURES = "AlertPublishFailures"

# The log message of a failed audit write (a log metric filter counts it: the request itself
# succeeds, so only the log line tells).
AUDIT_WRITE_FAILED_MESSAGE = "audit write failed"
AUDIT_WRITE_FAILURES = "AuditWriteFailures"

# The log message when KMS refuses our own key (access denied to our role, key disabled or
# pending deletion): a log metric filter counts it and the operators' alarm fires. Users get a
# 503, and the daily run retries instead of telling owners to re-enter their secrets.
KEY_SERVICE_FAULT_MESSAGE = "encryption key unusable"
KEY_SERVICE_FAULTS = "KeyServiceFaults"
