-- Finished attempts per queue and task over [since, until), from the per-minute
-- aggregates: one row per minute too when per_minute is true (oldest first),
-- else one row per queue and task for the whole range (minute NULL).
SELECT queue, task, CASE WHEN :per_minute THEN minute END AS minute,
       sum(succeeded) AS succeeded,
       sum(retried) AS retried,
       sum(dead) AS dead,
       sum(attempts) AS attempts,
       sum(wait_le_0_1) AS wait_le_0_1,
       sum(wait_le_0_5) AS wait_le_0_5,
       sum(wait_le_1) AS wait_le_1,
       sum(wait_le_5) AS wait_le_5,
       sum(wait_le_10) AS wait_le_10,
       sum(wait_le_30) AS wait_le_30,
       sum(wait_le_60) AS wait_le_60,
       sum(wait_le_300) AS wait_le_300,
       sum(wait_le_900) AS wait_le_900,
       sum(wait_le_3600) AS wait_le_3600,
       sum(run_seconds) AS run_seconds,
       sum(run_le_0_01) AS run_le_0_01,
       sum(run_le_0_025) AS run_le_0_025,
       sum(run_le_0_05) AS run_le_0_05,
       sum(run_le_0_1) AS run_le_0_1,
       sum(run_le_0_25) AS run_le_0_25,
       sum(run_le_0_5) AS run_le_0_5,
       sum(run_le_1) AS run_le_1,
       sum(run_le_5) AS run_le_5,
       sum(run_le_30) AS run_le_30,
       sum(run_le_300) AS run_le_300
FROM conveyor_job_stats
WHERE minute >= :since AND minute < :until
  AND (:task IS NULL OR task = :task)
  AND (:queue IS NULL OR queue = :queue)
GROUP BY 3, 1, 2  -- minute (NULL for the whole range), queue, task
ORDER BY 3, 1, 2
