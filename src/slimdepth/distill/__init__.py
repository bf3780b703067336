"""Distillation (methods 3-5 of the design): frozen teachers, response, feature and affinity
knowledge distillation with auxiliary unlabeled images, one- and two-stage schedules, and
dense pseudo-labels made by teachers or by stereo matching compensated with sparse LiDAR.
"""
