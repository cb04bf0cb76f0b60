"""The distributed pipeline: Celery app and config, thin tasks, canvas
building, routing. Business logic stays in ocrq.engine / ocrq.storage; this
package is the glue that moves references (keys, polygons, versions) between
them."""
