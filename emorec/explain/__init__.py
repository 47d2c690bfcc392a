"""Why a tweet got its prediction: modality contributions, word importance and image heat maps.

For one tweet (a text and an image) and a run's models (:class:`emorec.predictor.RunModels`),
:meth:`Explainer.explain` gives:

- **probabilities**: TER's, IER's and the intermediate fusion's, and the late-fused ones (the run's weights);
- **modalities**: the late-fused prediction with both modalities, with the text alone and with the image alone.
  A modality is taken away by giving every model its empty form: the text becomes the empty text (token ids
  all padding), the image a blank image of ImageNet's mean colour (:data:`BLANK_RGB`, which VGG16's and
  ResNet50's ``preprocess_input`` turn into zeros). TER scores the text whatever the image, IER the image
  whatever the text; the fusion model sees both;
- **words**: for TER and for the fusion model, each token's importance for the predicted class by
  *occlusion* (:data:`WORD_METHOD`): the predicted class's probability with the whole text, minus the
  same with that token deleted from the vectorizer's token ids (the tokens after it move up one place, as if
  the word were not in the tweet). Positive: the word speaks for the predicted class;
- **heat maps**: for IER and for the fusion model, *Grad-CAM* (:data:`HEAT_METHOD`) on the backbone's last
  convolution: the feature maps weighted by the mean gradient of the predicted class's logit (before the
  softmax), summed over channels, negative values cut to zero and scaled so the hottest cell is 1 (a KerasHub
  CNN: on its last feature map). A KerasHub transformer (a ViT, CLIP's or SigLIP's vision tower) gets *occlusion*
  instead
  (:data:`OCCLUSION_METHOD`): the drop in the predicted class's probability when each of 7x7 cells of the image
  is blanked, cut at zero and scaled alike; the explanation says which ran.

The predicted class is the late-fused one throughout. One job per module: :mod:`~emorec.explain.explainer` computes
it all, :mod:`~emorec.explain.figure` draws the one picture of it (the image with each heat map, the words
coloured by importance, bars of the probabilities), :mod:`~emorec.explain.output` gives its JSON, its lines for a
terminal and its files, and :mod:`~emorec.explain.examples` chooses which test tweets a report explains.
"""
