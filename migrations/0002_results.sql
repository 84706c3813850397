-- 0002_results.sql: a succeeded job's results file (OpenAI's result_files): the CSV of its step
-- metrics, stored as a file of purpose "fine-tune-results" (files/FILE_ID.csv).

ALTER TABLE jobs ADD COLUMN result_file TEXT;   -- "file-..." once the job succeeded
